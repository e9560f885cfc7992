"""A real OCI registry on loopback (Debian's `docker-registry`, distribution 2.x) and the
pushes a test needs: images, and cosign signatures in both layouts, written the way cosign
writes them (legacy `.sig` tag; Sigstore bundle referrer plus the `sha256-<hex>` tag index
that cosign falls back to on registries without the referrers API, as this one is)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from policies.images.cosign import BUNDLE_MEDIA_TYPE, IN_TOTO, SIGN_PREDICATE, SIGNATURE_ANNOTATION, SIMPLE_SIGNING
from policies.images.registry import OCI_INDEX, OCI_MANIFEST

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class TokenIssuer:
    """A Docker token service on loopback: anonymous tokens for what is asked (ES256 JWTs with
    an x5c chain the registry trusts), and a record of the scopes requested."""

    SERVICE = "test-registry"

    def __init__(self, root: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = root / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.scopes: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scope = query.get("scope", [""])[0]
                issuer.scopes.append(scope)
                _, repo, actions = (scope.split(":") + ["", "", ""])[:3]
                body = json.dumps({"token": issuer.issue(repo, actions), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def registry_config(self) -> str:
        return (
            f"auth: {{token: {{realm: '{self.realm}', service: {self.SERVICE}, issuer: test-issuer, "
            f"rootcertbundle: '{self.bundle}'}}}}\n"
        )

    def issue(self, repo: str, actions: str) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        x5c = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        header = {"typ": "JWT", "alg": "ES256", "x5c": x5c}
        now = int(time.time())
        claims = {
            "iss": "test-issuer",
            "sub": "",
            "aud": self.SERVICE,
            "exp": now + 300,
            "nbf": now - 60,
            "iat": now,
            "jti": b64(os.urandom(8)),
            "access": [{"type": "repository", "name": repo, "actions": [a for a in actions.split(",") if a]}],
        }
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Registry:
    """`docker-registry serve` with its storage in a temp dir, on a free loopback port."""

    def __init__(self, root: Path, tokens: TokenIssuer | None = None) -> None:
        self.root = root
        self.tokens = tokens  # bearer-token auth, as Docker Hub, GHCR and Harbor do
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None
        self.host = ""

    def start(self, timeout: float = 60.0) -> Registry:
        for _ in range(5):
            port = free_port()
            config = self.root / "config.yml"
            config.write_text(
                "version: 0.1\n"
                "log: {level: error, accesslog: {disabled: true}}\n"
                f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}\n"
                f"http: {{addr: '127.0.0.1:{port}'}}\n" + (self.tokens.registry_config() if self.tokens else "")
            )
            self.log = (self.root / "registry.log").open("wb")
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=self.log, stderr=self.log)
            self.host = f"127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):  # noqa: S310
                        return self
                except urllib.error.HTTPError as e:
                    if e.code == 401:
                        return self
                except (urllib.error.URLError, OSError):
                    time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"docker-registry did not start: {(self.root / 'registry.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()

    def _call(self, method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        """One request; behind token auth, answer the challenge with a token for its scope."""
        full = url if url.startswith("http") else f"http://{self.host}/v2/{url}"
        headers = dict(headers or {})
        for attempt in range(2):
            req = urllib.request.Request(full, data=data, method=method, headers=headers)  # noqa: S310
            try:
                return urllib.request.urlopen(req, timeout=30)  # noqa: S310
            except urllib.error.HTTPError as e:
                if e.code != 401 or self.tokens is None or attempt:
                    raise
                scope = e.headers["WWW-Authenticate"].split('scope="')[1].split('"')[0]
                _, repo, actions = scope.split(":")
                headers["Authorization"] = f"Bearer {self.tokens.issue(repo, actions)}"
        raise AssertionError("unreachable")

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        with self._call("POST", f"{repo}/blobs/uploads/") as resp:
            location = resp.headers["Location"]
        if location.startswith("/"):
            location = f"http://{self.host}{location}"
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream"}
        with self._call("PUT", f"{location}{sep}digest={digest}", data, headers):
            pass
        return digest

    def push_manifest(self, repo: str, reference: str, manifest: dict[str, Any]) -> str:
        body = json.dumps(manifest).encode()
        with self._call("PUT", f"{repo}/manifests/{reference}", body, {"Content-Type": manifest["mediaType"]}):
            pass
        return digest_of(body)

    def get_manifest(self, repo: str, reference: str) -> bytes | None:
        """The manifest's bytes, None when the registry has none by that name."""
        headers = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
        try:
            with self._call("GET", f"{repo}/manifests/{reference}", headers=headers) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def _descriptor(self, repo: str, media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": self.push_blob(repo, data), "size": len(data)}

    def push_image(self, repo: str, tag: str, content: bytes = b"hello") -> str:
        """A one-layer OCI image; returns its manifest digest."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self._descriptor(repo, "application/vnd.oci.image.config.v1+json", config),
            "layers": [self._descriptor(repo, "application/vnd.oci.image.layer.v1.tar", content)],
        }
        return self.push_manifest(repo, tag, manifest)


class CosignKey:
    """A fresh ECDSA P-256 key pair, as `cosign generate-key-pair` makes."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.public_pem = (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data, ec.ECDSA(hashes.SHA256()))


def simple_signing_payload(reference: str, digest: str) -> bytes:
    claims = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(claims, separators=(",", ":")).encode()


def sign_legacy(
    registry: Registry,
    repo: str,
    digest: str,
    key: CosignKey,
    payload: bytes | None = None,
    signed: bytes | None = None,
) -> None:
    """cosign < 3 `sign --key`: a layer on tag `sha256-<hex>.sig` (appended to existing ones).
    `payload` replaces the stored payload and `signed` what the signature is made over, for
    tampering tests."""
    payload = payload if payload is not None else simple_signing_payload(f"{registry.host}/{repo}", digest)
    signature = base64.b64encode(key.sign(signed if signed is not None else payload)).decode()
    tag = digest.replace(":", "-") + ".sig"
    existing = registry.get_manifest(repo, tag)
    layer = registry._descriptor(repo, SIMPLE_SIGNING, payload)
    layer["annotations"] = {SIGNATURE_ANNOTATION: signature}
    manifest = (
        json.loads(existing)
        if existing
        else {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": registry._descriptor(repo, "application/vnd.oci.image.config.v1+json", b"{}"),
            "layers": [],
        }
    )
    manifest["layers"].append(layer)
    registry.push_manifest(repo, tag, manifest)


def cosign_bundle(digest: str, key: CosignKey, predicate_type: str = SIGN_PREDICATE) -> bytes:
    """A key-signed Sigstore bundle v0.3 with a DSSE envelope, as cosign 3 `sign --key` makes
    with the transparency log off."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": predicate_type,
        "predicate": {},
    }
    payload = json.dumps(statement).encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(IN_TOTO), IN_TOTO.encode(), len(payload), payload)
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": ""}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": base64.b64encode(key.sign(pae)).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle).encode()


def attach_bundle(registry: Registry, repo: str, digest: str, bundle: bytes) -> str:
    """cosign 3's attach on a registry without the referrers API: the referrer manifest by
    digest, then its descriptor added to the OCI index under tag `sha256-<hex>`."""
    image = registry.get_manifest(repo, digest) or b"{}"
    subject = {"mediaType": json.loads(image).get("mediaType", OCI_MANIFEST), "digest": digest, "size": len(image)}
    annotations = {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": SIGN_PREDICATE}
    referrer = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": registry._descriptor(repo, EMPTY_CONFIG, b"{}"),
        "layers": [registry._descriptor(repo, BUNDLE_MEDIA_TYPE, bundle)],
        "subject": subject,
        "annotations": annotations,
    }
    body = json.dumps(referrer).encode()
    referrer_digest = registry.push_manifest(repo, digest_of(body), referrer)
    tag = digest.replace(":", "-")
    existing = registry.get_manifest(repo, tag)
    index = json.loads(existing) if existing else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    size = len(body)
    index["manifests"].append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": referrer_digest,
            "size": size,
            "artifactType": BUNDLE_MEDIA_TYPE,
            "annotations": annotations,
        }
    )
    registry.push_manifest(repo, tag, index)
    return referrer_digest
