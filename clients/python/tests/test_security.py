"""TLS, mutual TLS and bearer tokens against a real server (serve
--tls-cert/--tls-key/--tls-client-ca and --auth-token-file), with the sync
and the async client. One server per configuration, shared by the module."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
from typing import Any, Dict, Iterator, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import varwatch
from conftest import Server
from helpers import TIMEOUT, take

ACME = "py-acme-token-0123456789"
GLOBEX = "py-globex-token-0123456789"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class CA:
    """A certificate authority made for the tests."""

    def __init__(self, cn: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str, server: bool) -> Tuple[bytes, bytes]:
        """A certificate (for 127.0.0.1 if server) and its key, PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            import ipaddress
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("varwatch.test")]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


class PKI:
    def __init__(self, d: pathlib.Path) -> None:
        self.ca = CA("test-ca")
        self.other = CA("other-ca")
        self.server_cert, self.server_key = self.ca.issue("server", server=True)
        self.client_cert, self.client_key = self.ca.issue("client", server=False)
        self.stranger_cert, self.stranger_key = self.other.issue("stranger", server=False)
        self.files: Dict[str, str] = {}
        for name, data in (("ca.pem", self.ca.pem), ("server.crt", self.server_cert), ("server.key", self.server_key)):
            (d / name).write_bytes(data)
            self.files[name] = str(d / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_server(varwatch_bin: str, pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Mutual TLS and tokens: acme and globex are tenants."""
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text(f"# test tokens\n{ACME} tenant=acme\n\n{GLOBEX} tenant=globex\n")
    s = Server(varwatch_bin, "--tls-cert", pki.files["server.crt"], "--tls-key", pki.files["server.key"],
               "--tls-client-ca", pki.files["ca.pem"], "--auth-token-file", str(tokens),
               client_kwargs=dict(root_certificates=pki.ca.pem, private_key=pki.client_key,
                                  certificate_chain=pki.client_cert, token=ACME)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def token_server(varwatch_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Plaintext with tokens."""
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text(f"{ACME} tenant=acme\n{GLOBEX} tenant=globex\n")
    s = Server(varwatch_bin, "--auth-token-file", str(tokens), client_kwargs=dict(token=ACME)).start()
    yield s
    s.stop()


def mtls(pki: PKI, token: str = ACME, **kw: Any) -> Dict[str, Any]:
    args: Dict[str, Any] = dict(root_certificates=pki.ca.pem, private_key=pki.client_key,
                                certificate_chain=pki.client_cert, token=token, timeout=5.0)
    args.update(kw)
    return args


def test_sync_mtls_with_token(mtls_server: Server, pki: PKI) -> None:
    with varwatch.Client(mtls_server.target, **mtls(pki)) as c:
        with c.create_session() as s:
            s.register("x", "integer", 1)
            w = s.watch("x", include_initial_values=True)
            with w:
                assert [(u.name, u.value) for u in take(w, 2)] == [("x", 1), ("", None)]  # and initial_values_complete
                s.set("x", 2)
                assert [(u.name, u.value) for u in take(w, 1)] == [("x", 2)]
            assert [i.id for i in c.list_sessions()] == [s.id]

            with varwatch.Client(mtls_server.target, **mtls(pki, GLOBEX)) as other:
                assert other.list_sessions() == []
                with pytest.raises(varwatch.PermissionDenied) as e:
                    other.session(s.id).get("x")
                assert "another tenant" in e.value.message
                with pytest.raises(varwatch.PermissionDenied):
                    other.session(s.id).set("x", 3)
                with pytest.raises(varwatch.PermissionDenied):
                    for _ in other.session(s.id).watch("x", include_initial_values=True):
                        pass
            assert s.get("x").value == 2


@pytest.mark.parametrize("kwargs,error", [
    (dict(token=None), varwatch.Unauthenticated),
    (dict(token="not-a-token-0123456789"), varwatch.Unauthenticated),
    (dict(private_key=None, certificate_chain=None), varwatch.Unavailable),  # no client certificate
    (dict(root_certificates=None), varwatch.Unavailable),  # the system roots do not know the test CA
    (dict(private_key="stranger", certificate_chain="stranger"), varwatch.Unavailable),  # a client certificate of another CA
], ids=["no token", "wrong token", "no client certificate", "unknown server CA", "client certificate of another CA"])
def test_sync_mtls_refused(mtls_server: Server, pki: PKI, kwargs: Dict[str, Any], error: type) -> None:
    if kwargs.get("private_key") == "stranger":
        kwargs = dict(private_key=pki.stranger_key, certificate_chain=pki.stranger_cert)
    args = mtls(pki, **kwargs)
    if args["root_certificates"] is None and args["private_key"] is None:
        args["tls"] = True
    with varwatch.Client(mtls_server.target, **args) as c:
        with pytest.raises(error):
            c.ping("x")


def test_plaintext_client_refused_by_tls_server(mtls_server: Server) -> None:
    with varwatch.Client(mtls_server.target, token=ACME, timeout=5.0) as c:
        with pytest.raises(varwatch.Unavailable):
            c.ping("x")


def test_server_name_override(mtls_server: Server, pki: PKI) -> None:
    host = "localhost:" + mtls_server.target.rsplit(":", 1)[1]  # not in the certificate
    with varwatch.Client(host, **mtls(pki, server_name="varwatch.test")) as c:
        assert c.ping("hi").message == "hi"


def test_async_mtls_with_token(mtls_server: Server, pki: PKI) -> None:
    async def main() -> None:
        async with varwatch.AsyncClient(mtls_server.target, **mtls(pki)) as c:
            async with await c.create_session() as s:
                await s.register("x", "float", 1.5)
                w = s.watch("x", include_initial_values=True)
                it = w.__aiter__()
                got = [await asyncio.wait_for(it.__anext__(), TIMEOUT) for _ in range(2)]
                assert [(u.name, u.value) for u in got] == [("x", 1.5), ("", None)]  # and initial_values_complete
                await s.set("x", 2.5)
                u = await asyncio.wait_for(it.__anext__(), TIMEOUT)
                assert (u.name, u.value) == ("x", 2.5)
                await w.aclose()
                async with varwatch.AsyncClient(mtls_server.target, **mtls(pki, GLOBEX)) as other:
                    with pytest.raises(varwatch.PermissionDenied):
                        await other.session(s.id).get("x")
                    assert await other.list_sessions() == []
        async with varwatch.AsyncClient(mtls_server.target, **mtls(pki, token=None)) as anon:
            with pytest.raises(varwatch.Unauthenticated):
                await anon.ping("x")

    asyncio.run(main())


def test_token_over_plaintext(token_server: Server) -> None:
    with varwatch.Client(token_server.target, token=ACME, timeout=5.0) as c:
        with c.create_session() as s:
            s.register("x", "boolean", True)
            with varwatch.Client(token_server.target, token=GLOBEX, timeout=5.0) as other:
                with pytest.raises(varwatch.PermissionDenied):
                    other.session(s.id).heartbeat()
    with varwatch.Client(token_server.target, timeout=5.0) as anon:
        with pytest.raises(varwatch.Unauthenticated):
            anon.list_sessions()


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="both private_key and certificate_chain"):
        varwatch.Client("127.0.0.1:1", private_key=b"k")
    with pytest.raises(ValueError, match="not both"):
        varwatch.Client("127.0.0.1:1", tls=True, credentials=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TLS connections only"):
        varwatch.Client("127.0.0.1:1", server_name="x")
    with pytest.raises(ValueError, match="authorization"):
        varwatch.Client("127.0.0.1:1", token="t", metadata={"Authorization": "Bearer u"})
