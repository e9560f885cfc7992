"""The web server on the real engine: the embedded cluster with every controller, a real
git server on loopback, the engine, and `create_app` served by the house's WSGI server on
a free port. Responses of /api/v1 are checked against gitops/server/openapi.yaml."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator

from controllers.cluster import EmbeddedCluster
from controllers.wsgi import WSGIServer
from gitops.engine import Engine
from gitops.server import close_app, create_app
from gitops.server.auth import Tokens
from tests.gitops.conftest import GitServer, OnEngine

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
READONLY_TOKEN = "readonly-token-for-tests-987654"
OPENAPI = yaml.safe_load((Path(__file__).parents[3] / "gitops" / "server" / "openapi.yaml").read_text())


class Dash(OnEngine):
    """The running server, with helpers to make apps and call the API as users do."""

    def __init__(self, cluster: EmbeddedCluster, engine: Engine, url: str, git: GitServer) -> None:
        super().__init__(cluster, engine)
        self.url, self.git = url, git

    def api(self, method: str, path: str, token: str | None = ADMIN_TOKEN, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kw)


def check_openapi(resp: requests.Response) -> Any:
    """The response's JSON, validated against the schema the OpenAPI file gives for the
    request's operation and the status code (an undocumented status code fails too)."""
    method, path = str(resp.request.method), urlsplit(str(resp.request.url)).path
    responses = OPENAPI["paths"][_template(path)][method.lower()]["responses"]
    assert str(resp.status_code) in responses, f"{method} {path}: {resp.status_code} is not documented"
    spec = responses[str(resp.status_code)]
    if "$ref" in spec:
        spec = OPENAPI["components"]["responses"][spec["$ref"].rpartition("/")[2]]
    schema = spec["content"]["application/json"]["schema"]
    body = resp.json()
    # The components ride along so that "#/components/schemas/..." resolves in the schema.
    Draft202012Validator({**schema, "components": OPENAPI["components"]}).validate(body)
    return body


def _template(path: str) -> str:
    rel = path.removeprefix("/api/v1")
    for template in OPENAPI["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, rel):
            return str(template)
    raise AssertionError(f"{path} is not in the OpenAPI file")


@pytest.fixture
def dash(kube: EmbeddedCluster, engine: Engine, git_server: GitServer) -> Iterator[Dash]:
    web_app = create_app(engine, Tokens(ADMIN_TOKEN, (READONLY_TOKEN,)))
    server = WSGIServer(web_app).start()
    try:
        yield Dash(kube, engine, server.url, git_server)
    finally:
        server.stop()
        close_app(web_app)
