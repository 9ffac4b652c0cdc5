"""The endpoint client authenticates the way the Secret says, against real loopback servers.

Cases:
- Secret parsing: server-url required; two auth modes refused with Krateo's message; bad base64
  refused naming the key; base64 PEM decoded; in-cluster default (SA token file, insecure).
- bearer, basic, and an explicit Authorization header beating bearer and AWS.
- mTLS: a CA, server and client certificate made with the openssl CLI; the server requires the
  client certificate, sees it, and refuses a client without one; the private key files are gone.
- TLS: a self-signed server is refused (InvalidInput), accepted with insecure.
- proxy-url: requests go through a recording forward proxy.
- AWS SigV4: the server recomputes the signature independently (hashlib/hmac), including the
  canonical query string that Krateo gets wrong.
- URL joining, verb, payload and header parsing as Krateo does them.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import io
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from loopback_http import Reply, Seen, forward_proxy, serve

from functions.clients.endpoint import Endpoint, RetryPolicy, fetch, request
from functions.errors import InvalidInput
from functions.models.crs import API

NO_RETRY = RetryPolicy(max_retries=0, sleep=lambda _s: None)
OK = Reply(200, b"ok", {"Content-Type": "text/plain"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _get(endpoint: Endpoint, path: str = "/data", **api: Any) -> bytes:
    dest = io.BytesIO()
    fetch(API(path=path, **api), endpoint, {}, dest=dest, retry=NO_RETRY, environ={})
    return dest.getvalue()


# --- Secret parsing ---------------------------------------------------------------------------


def test_server_url_is_required() -> None:
    with pytest.raises(InvalidInput, match="server-url") as info:
        Endpoint.from_secret({"token": "t"})
    assert info.value.errors[0].loc == "server-url"


@pytest.mark.parametrize(
    "data",
    [
        {"token": "t", "password": "p"},
        {"token": "t", "aws-access-key": "a", "aws-secret-key": "s", "aws-region": "r"},
        {"username": "u", "password": "p", "aws-access-key": "a", "aws-secret-key": "s", "aws-region": "r"},
    ],
    ids=["bearer+basic", "bearer+aws", "basic+aws"],
)
def test_two_auth_modes_are_refused(data: dict[str, str]) -> None:
    with pytest.raises(InvalidInput, match="only one of username/password, bearer token and AWS must be set"):
        Endpoint.from_secret({"server-url": "http://x", **data})


def test_username_without_password_and_aws_without_region_are_not_modes() -> None:
    ep = Endpoint.from_secret({"server-url": "http://x", "token": "t", "username": "u", "aws-access-key": "a"})
    assert ep.auth_mode == "bearer"


def test_bad_base64_certificate_data_names_the_key() -> None:
    with pytest.raises(InvalidInput, match="client-certificate-data") as info:
        Endpoint.from_secret({"server-url": "http://x", "client-certificate-data": "%%%not base64"})
    assert info.value.errors[0].loc == "client-certificate-data"


def test_certificate_data_is_base64_pem_and_flags_parse() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    ep = Endpoint.from_secret(
        {"server-url": "https://x", "certificate-authority-data": _b64(pem), "insecure": "true", "debug": "false"}
    )
    assert ep.ca_data == pem and ep.insecure and not ep.debug


def test_in_cluster_default_uses_the_service_account_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    ep = Endpoint.in_cluster(str(token))
    assert (ep.server_url, ep.token, ep.insecure) == ("https://kubernetes.default.svc", "sa-token", True)
    with pytest.raises(InvalidInput, match="service-account token"):
        Endpoint.in_cluster(str(tmp_path / "missing"))


# --- credentials on the wire ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "headers", "expected"),
    [
        ({"token": "tok"}, [], "Bearer tok"),
        ({"username": "alice", "password": "s3cret"}, [], "Basic " + _b64(b"alice:s3cret")),
        ({"token": "tok"}, ["Authorization: Token explicit"], "Token explicit"),
        ({"aws-access-key": "AK", "aws-secret-key": "SK", "aws-region": "eu-west-1"}, ["authorization: Mine"], "Mine"),
        ({}, [], None),
    ],
    ids=["bearer", "basic", "explicit-beats-bearer", "explicit-beats-aws", "none"],
)
def test_credentials_sent(secret: dict[str, str], headers: list[str], expected: str | None) -> None:
    with serve(OK) as srv:
        body = _get(Endpoint.from_secret({"server-url": srv.url, **secret}), headers=headers)
    assert body == b"ok"
    assert srv.seen[0].headers.get("authorization") == expected
    assert "x-amz-date" not in srv.seen[0].headers


def test_request_helper_uses_the_same_auth_rules() -> None:
    with serve(Reply(201, b"created")) as srv:
        ep = Endpoint.from_secret({"server-url": srv.url, "username": "u", "password": "p"})
        resp = request("POST", srv.url + "/upload?table=t", endpoint=ep, content=b"[]")
    assert (resp.status_code, resp.content) == (201, b"created")
    assert srv.seen[0].headers["authorization"] == "Basic " + _b64(b"u:p")
    assert srv.seen[0].body == b"[]" and "x-krateo-traceid" in srv.seen[0].headers


def test_url_verb_payload_and_headers_follow_krateo() -> None:
    with serve(OK) as srv:
        _get(
            Endpoint(server_url=srv.url + "/base/"),
            path="/v1/items?x=1",
            verb="post",
            payload='{"q": 1}',
            headers=["X-A: 1", "malformed", ": no-name", "x-a:   2  ", "X-B: a:b:c"],
        )
        _get(Endpoint(server_url=srv.url), path="plain", verb="")
    first, second = srv.seen
    assert (first.method, first.path, first.body) == ("POST", "/base/v1/items?x=1", b'{"q": 1}')
    assert first.headers["x-a"] == "2" and first.headers["x-b"] == "a:b:c"
    assert "content-type" not in first.headers and len(first.headers["x-krateo-traceid"]) >= 8
    assert (second.method, second.path, second.body) == ("GET", "/plain", b"")
    assert second.headers["x-krateo-traceid"] != first.headers["x-krateo-traceid"]


# --- TLS --------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.{crt,key}; server.{crt,key} (SAN IP 127.0.0.1) and client.{crt,key} signed by the CA; self.{crt,key}."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=finops-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=finops-{name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        extra = ["-extfile", "san.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-out", f"{name}.crt", *extra, cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=self-signed",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "self.key", "-out", "self.crt", cwd=d)
    return d


def _server_tls(pki: Path, name: str, require_client: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / f"{name}.crt", pki / f"{name}.key")
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki / "ca.crt")
    return ctx


def _pem(pki: Path, name: str) -> str:
    return _b64((pki / name).read_bytes())


def test_mtls_presents_the_client_certificate(pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with serve(OK, tls=_server_tls(pki, "server", require_client=True)) as srv:
        ep = Endpoint.from_secret({
            "server-url": srv.url,
            "certificate-authority-data": _pem(pki, "ca.crt"),
            "client-certificate-data": _pem(pki, "client.crt"),
            "client-key-data": _pem(pki, "client.key"),
        })
        assert _get(ep) == b"ok"
    cert = srv.seen[0].peer_cert
    assert cert is not None and (("commonName", "finops-client"),) in cert["subject"]
    assert list(scratch.iterdir()) == []  # the private key never outlives the TLS set-up


def test_mtls_server_refuses_a_client_without_certificate(pki: Path) -> None:
    with serve(OK, tls=_server_tls(pki, "server", require_client=True)) as srv:
        ep = Endpoint.from_secret({"server-url": srv.url, "certificate-authority-data": _pem(pki, "ca.crt")})
        with pytest.raises(InvalidInput, match="client certificate refused"):
            _get(ep)
        wrong = Endpoint.from_secret({
            "server-url": srv.url,
            "certificate-authority-data": _pem(pki, "ca.crt"),
            "client-certificate-data": _pem(pki, "self.crt"),
            "client-key-data": _pem(pki, "self.key"),
        })
        with pytest.raises(InvalidInput, match="client certificate refused"):
            _get(wrong)
    assert srv.seen == []


def test_half_a_client_certificate_is_refused(pki: Path) -> None:
    with pytest.raises(InvalidInput, match="must both be set"):
        Endpoint.from_secret({"server-url": "https://x", "client-certificate-data": _pem(pki, "client.crt")})


def test_self_signed_server_needs_insecure(pki: Path) -> None:
    with serve(OK, tls=_server_tls(pki, "self", require_client=False)) as srv:
        with pytest.raises(InvalidInput, match="TLS verification failed"):
            _get(Endpoint(server_url=srv.url))
        assert _get(Endpoint(server_url=srv.url, insecure=True)) == b"ok"
        assert _get(Endpoint(server_url=srv.url, ca_data=(pki / "self.crt").read_bytes())) == b"ok"


# --- proxy ------------------------------------------------------------------------------------


def test_proxy_url_routes_requests_through_the_proxy() -> None:
    with serve(OK) as srv, forward_proxy() as proxy:
        body = _get(Endpoint(server_url=srv.url, token="t", proxy_url=proxy.url), path="/via?x=1")
    assert body == b"ok"
    assert [s.path for s in proxy.seen] == [f"{srv.url}/via?x=1"]
    assert srv.seen[0].headers["authorization"] == "Bearer t"


def test_unsupported_proxy_scheme_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="proxy-url"):
        _get(Endpoint(server_url="http://127.0.0.1:9", proxy_url="ftp://127.0.0.1:21"))


# --- AWS SigV4 --------------------------------------------------------------------------------


def _aws_verify(seen: Seen, host: str, secret: str) -> str | None:
    """An independent SigV4 check (AWS docs); returns why it fails, or None."""
    algo, _, rest = seen.headers.get("authorization", "").partition(" ")
    parts = dict(p.strip().split("=", 1) for p in rest.split(","))
    access, date, region, service, term = parts["Credential"].split("/")
    amz_date = seen.headers["x-amz-date"]
    if algo != "AWS4-HMAC-SHA256" or term != "aws4_request" or not amz_date.startswith(date):
        return "bad authorization structure"
    if seen.headers["x-amz-content-sha256"] != hashlib.sha256(seen.body).hexdigest():
        return "payload hash mismatch"
    if seen.headers["host"] != host:
        return "host mismatch"
    signed = parts["SignedHeaders"].split(";")
    if not {"host", "x-amz-date", "x-amz-content-sha256"} <= set(signed):
        return f"unsigned required headers: {signed}"
    url = urlsplit(seen.path)
    pairs = parse_qsl(url.query, keep_blank_values=True)
    query = "&".join(sorted(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs))
    canonical = "\n".join([
        seen.method, url.path, query,
        "".join(f"{h}:{seen.headers[h].strip()}\n" for h in signed),
        ";".join(signed), seen.headers["x-amz-content-sha256"],
    ])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for msg in (date, region, service, "aws4_request"):
        key = hmac.new(key, msg.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, parts["Signature"]) else "signature mismatch"


@pytest.mark.parametrize(
    ("verb", "path", "payload"),
    [
        ("GET", "/bucket/exports/focus.csv", ""),
        ("GET", "/bucket?list-type=2&prefix=exports%2F2024%2F&max-keys=10", ""),
        ("POST", "/query?api-version=2023-03-01", '{"type": "ActualCost"}'),
    ],
    ids=["plain-path", "query-string-signed-properly", "post-with-payload"],
)
def test_aws_sigv4_signature_verifies(verb: str, path: str, payload: str) -> None:
    problems: list[str | None] = []

    def route(seen: Seen) -> Reply:
        problems.append(_aws_verify(seen, f"127.0.0.1:{port}", "SECRETKEY"))
        return OK if problems[-1] is None else Reply(403, problems[-1].encode())

    with serve(route) as srv:
        port = srv.port
        ep = Endpoint.from_secret({
            "server-url": srv.url, "aws-access-key": "AKIDEXAMPLE", "aws-secret-key": "SECRETKEY",
            "aws-region": "eu-west-1", "aws-service": "s3",
        })
        assert _get(ep, path=path, verb=verb, payload=payload) == b"ok"
    assert problems == [None]
    seen = srv.seen[0]
    assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/s3/aws4_request" in seen.headers["authorization"]
    stamp = datetime.datetime.strptime(seen.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    assert abs((datetime.datetime.now(datetime.UTC) - stamp).total_seconds()) < 60


def test_aws_with_a_wrong_secret_is_refused_by_the_verifier() -> None:
    def route(seen: Seen) -> Reply:
        why = _aws_verify(seen, f"127.0.0.1:{port}", "THE-REAL-SECRET")
        return OK if why is None else Reply(403, why.encode())

    with serve(route) as srv:
        port = srv.port
        ep = Endpoint(server_url=srv.url, aws_access_key="AK", aws_secret_key="WRONG", aws_region="us-east-1")
        with pytest.raises(InvalidInput, match="403: signature mismatch"):
            _get(ep)

