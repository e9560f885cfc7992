"""The one production WSGI server of the house (cheroot), shared by the Kubernetes API
facade and the web server, run in a background thread so tests and `gitops up` can
start and stop it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

log = logging.getLogger(__name__)


class WSGIServer:
    """A threaded HTTP server. `threads` bounds concurrent requests, and every open watch
    holds one, so it is sized for at least a few hundred watchers."""

    def __init__(
        self,
        app: Callable[..., Any],
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 256,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """`tls` is (certificate file, private key file) to serve HTTPS."""
        self._server = wsgi.Server(
            (host, port), app, numthreads=threads, max=-1, request_queue_size=1024, timeout=60, shutdown_timeout=1
        )
        self.scheme = "http"
        if tls is not None:
            self._server.ssl_adapter = BuiltinSSLAdapter(tls[0], tls[1])
            self.scheme = "https"
        self._server.prepare()
        self.host = host
        self.port: int = self._server.bind_addr[1]
        self._thread = threading.Thread(target=self._server.serve, name=f"wsgi-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> WSGIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._thread.join(timeout=5)
