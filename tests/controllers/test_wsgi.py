"""The API's HTTPS server reads request lines and headers however they arrive on the wire:
a byte at a time, several requests in one packet, lines longer than its buffer."""

from __future__ import annotations

import email.utils
import socket
import ssl

from controllers.cluster import EmbeddedCluster


def _tls(cluster: EmbeddedCluster) -> ssl.SSLSocket:
    assert cluster.certs is not None
    ctx = ssl.create_default_context(cafile=str(cluster.certs.ca_cert))
    raw = socket.create_connection(("127.0.0.1", cluster.http.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_answers(sock: ssl.SSLSocket, count: int) -> list[tuple[str, dict[str, str], bytes]]:
    """`count` HTTP answers with a Content-Length, parsed off one connection."""
    data = b""
    answers = []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            status, *lines = data[:head_end].decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
            length = int(headers["content-length"])
            if len(data) >= head_end + 4 + length:
                answers.append((status, headers, data[head_end + 4 : head_end + 4 + length]))
                data = data[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(answers)} answers"
        data += chunk
    return answers


def _get(path: str, token: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode()


def test_requests_trickled_a_byte_at_a_time_and_pipelined(cluster: EmbeddedCluster) -> None:
    token = cluster.token or ""
    with _tls(cluster) as sock:
        for byte in _get("/api/v1/namespaces/default", token):
            sock.sendall(bytes([byte]))
        ((status, headers, body),) = _read_answers(sock, 1)
        assert status == "HTTP/1.1 200 OK"
        assert b'"name":"default"' in body.replace(b" ", b"")
        assert email.utils.parsedate_to_datetime(headers["date"]) is not None

        # three requests in one write, answered in order on the same connection
        sock.sendall(
            _get("/api/v1/namespaces/default", token) + _get("/api/v1/namespaces/nope", token) + _get("/version", token)
        )
        codes = [status.split()[1] for status, _, _ in _read_answers(sock, 3)]
        assert codes == ["200", "404", "200"]


def test_a_header_line_longer_than_the_read_buffer(cluster: EmbeddedCluster) -> None:
    token = cluster.token or ""
    with _tls(cluster) as sock:
        sock.sendall(_get("/api/v1/namespaces/default", token, f"X-Long: {'a' * 20000}\r\n"))
        ((status, _, _),) = _read_answers(sock, 1)
        assert status == "HTTP/1.1 200 OK"


def test_many_idle_clients_keep_their_connections(cluster: EmbeddedCluster) -> None:
    """Each client keeps its connection between requests, however many are idle (a
    closed one costs the next request a TLS handshake)."""
    token = cluster.token or ""
    socks = [_tls(cluster) for _ in range(40)]
    try:
        for _ in range(2):
            for sock in socks:
                sock.sendall(_get("/api/v1/namespaces/default", token))
                ((status, headers, _),) = _read_answers(sock, 1)
                assert status == "HTTP/1.1 200 OK"
                assert headers.get("connection", "").lower() != "close"
    finally:
        for sock in socks:
            sock.close()
