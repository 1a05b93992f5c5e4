"""core.certs: a CA that issues certificates real TLS stacks accept.

Covers: a server certificate for DNS names and IPs completes a TLS handshake
verified against the CA with the ssl module (by DNS name and by IP address);
a name not in the SANs and a foreign CA are rejected; a client certificate is
accepted by a server that requires one and carries CN/O; a CA survives a
round trip through PEM; mismatched or malformed PEM is refused with a clear
error (a WaylayError with a title and a hint); a server certificate needs at least one host.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from core.certs import CA, CertificateError, make_ca
from core.errors import WaylayError
from tests.sandbox_security.tls import load_chain


@contextmanager
def tls_server(
    cert_pem: bytes, key_pem: bytes, *, client_ca: CA | None = None
) -> Iterator[tuple[int, list[object]]]:
    """A one-shot TLS server on 127.0.0.1; yields (port, [peer cert or error])."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_chain(ctx, cert_pem, key_pem)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=client_ca.cert_pem.decode())
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    seen: list[object] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            seen.append(exc)
            return
        conn.settimeout(10)
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                seen.append(tls.getpeercert())
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as exc:
            seen.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()
        thread.join(timeout=10)


def _client(
    port: int, server_name: str, trust: CA, client: tuple[bytes, bytes] | None = None
) -> bytes:
    ctx = ssl.create_default_context(cadata=trust.cert_pem.decode())
    if client is not None:
        load_chain(ctx, *client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.recv(2)


@pytest.fixture(scope="module")
def ca() -> CA:
    return make_ca("waylay-test-ca")


@pytest.mark.parametrize("name", ["webhook.waylay.svc", "127.0.0.1", "localhost"])
def test_server_cert_verifies_against_ca(ca: CA, name: str) -> None:
    cert, key = ca.issue_server_cert(["webhook.waylay.svc", "localhost", "127.0.0.1"])
    with tls_server(cert, key) as (port, _):
        assert _client(port, name, ca) == b"ok"


def test_name_outside_sans_is_rejected(ca: CA) -> None:
    cert, key = ca.issue_server_cert(["webhook.waylay.svc"])
    with tls_server(cert, key) as (port, _), pytest.raises(ssl.SSLCertVerificationError) as err:
        _client(port, "other.waylay.svc", ca)
    assert "hostname mismatch" in str(err.value).lower()


def test_foreign_ca_is_rejected(ca: CA) -> None:
    cert, key = make_ca("someone-else").issue_server_cert(["localhost"])
    with tls_server(cert, key) as (port, _), pytest.raises(ssl.SSLCertVerificationError):
        _client(port, "localhost", ca)


def test_client_cert_is_accepted_and_names_user(ca: CA) -> None:
    server = ca.issue_server_cert(["localhost"])
    client = ca.issue_client_cert("developer", ["team-a", "system:authenticated"])
    with tls_server(*server, client_ca=ca) as (port, seen):
        assert _client(port, "localhost", ca, client) == b"ok"
    peer = seen[0]
    assert isinstance(peer, dict)
    subject = {k: v for rdn in peer["subject"] for k, v in rdn}
    assert subject["commonName"] == "developer"
    leaf = x509.load_pem_x509_certificate(client[0])
    orgs = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["team-a", "system:authenticated"]


def test_ca_round_trips_through_pem(ca: CA) -> None:
    again = CA.from_pem(ca.cert_pem, ca.key_pem)
    cert, key = again.issue_server_cert(["localhost"])
    with tls_server(cert, key) as (port, _):
        assert _client(port, "localhost", ca) == b"ok"
    assert again.cert_pem == ca.cert_pem


def test_from_pem_refuses_mismatched_or_bad_material(ca: CA) -> None:
    other = make_ca("other")
    with pytest.raises(CertificateError, match="do not belong together") as err:
        CA.from_pem(ca.cert_pem, other.key_pem)
    assert isinstance(err.value, WaylayError)
    assert err.value.title == "Certificate problem"
    assert err.value.hint
    with pytest.raises(CertificateError, match="not a PEM"):
        CA.from_pem(b"nonsense", ca.key_pem)


def test_server_cert_needs_a_host(ca: CA) -> None:
    with pytest.raises(CertificateError, match="at least one host"):
        ca.issue_server_cert([])
