"""The one production WSGI server of the house (cheroot), shared by the Kubernetes API
facade and the web server, run in a background thread so tests and `gitops up` can
start and stop it."""

from __future__ import annotations

import email.utils
import io
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import makefile, wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from controllers.clock import PerSecond

log = logging.getLogger(__name__)

KEEP_ALIVE_LIMIT = 512


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
            (host, port),
            _dated(app),
            numthreads=threads,
            max=-1,
            request_queue_size=1024,
            timeout=60,
            shutdown_timeout=1,
        )
        # cheroot closes every connection after its answer once 10 idle ones are kept
        # open, so an eleventh client (kubectl, an informer, a browser tab) would pay a
        # TLS handshake per request: allow as many idle connections as a busy API has
        self._server.keep_alive_conn_limit = KEEP_ALIVE_LIMIT
        self.scheme = "http"
        if tls is not None:
            self._server.ssl_adapter = _TLSAdapter(tls[0], tls[1])
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


class _LineReader(makefile.StreamReader):
    """cheroot reads through the pure-Python `_pyio` BufferedReader (it needs to see the
    buffer for keep-alive), whose `readline` loops over peek and read in Python for every
    request and header line: a sixth of the API's time per request. A line already in
    the buffer is cut out directly; anything else takes the ordinary path."""

    # _pyio's buffer state (cheroot's own `has_data` reads it too)
    _read_lock: threading.Lock
    _read_buf: bytes
    _read_pos: int

    def readline(self, size: int | None = -1) -> bytes:
        line = self._buffered_line(size)
        if line is None and self.peek(1):  # one read from the socket refills the buffer
            line = self._buffered_line(size)
        return line if line is not None else super().readline(size)

    def _buffered_line(self, size: int | None) -> bytes | None:
        with self._read_lock:
            buf, pos = self._read_buf, self._read_pos
            end = buf.find(b"\n", pos)
            if end < 0 or (size is not None and 0 <= size <= end - pos):
                return None
            self._read_pos = end + 1
            self.bytes_read += end + 1 - pos
            return buf[pos : end + 1]


class _TLSAdapter(BuiltinSSLAdapter):
    """The builtin TLS adapter with the faster line reader (the adapter's `makefile` is
    cheroot's hook for the file objects of a TLS connection)."""

    def makefile(self, sock: Any, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE) -> Any:
        if "r" in mode:
            return _LineReader(sock, mode, bufsize)
        return makefile.StreamWriter(sock, mode, bufsize)


# the Date header, formatted once a second (cheroot formats it for every answer)
_http_date = PerSecond(lambda second: email.utils.formatdate(second, usegmt=True))


def _dated(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """`app` answering with a Date header, so cheroot does not format one per answer."""

    def with_date(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("Date", _http_date()))
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return with_date
