"""Certificate authorities and the certificates they issue.

One small CA type serves two users: the sandbox (its API server's serving
certificate and client trust) and ``waylay install`` (the traffic manager's
webhook serving certificate, whose CA goes into the MutatingWebhookConfiguration's
``caBundle``). Keys are ECDSA P-256; everything is exchanged as PEM bytes.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import LocalError

__all__ = ["CA", "CertificateError", "make_ca"]

_CA_LIFETIME = datetime.timedelta(days=3650)
_LEAF_LIFETIME = datetime.timedelta(days=825)
_CLOCK_SKEW = datetime.timedelta(minutes=5)


class CertificateError(LocalError, ValueError):
    """PEM material that cannot serve as a CA, or a request that cannot be issued."""

    code = "certificate"

    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__("Certificate problem", hint, detail=detail)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _san_entries(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


@dataclass(frozen=True)
class CA:
    """A certificate authority that can sign server and client certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate: what clients trust (``caBundle``, kubeconfig)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA's private key (unencrypted PKCS#8 PEM)."""
        return _key_pem(self.key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CA:
        """Load a CA saved earlier with ``cert_pem``/``key_pem``."""
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except ValueError as exc:
            raise CertificateError(
                f"not a PEM certificate and key: {exc}",
                "point waylay at the ca.crt/ca.key pair it wrote, or make a new CA",
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateError(
                "the CA key is not an EC key", "use a CA made by waylay (make_ca)"
            )
        if cert.public_key() != key.public_key():
            raise CertificateError(
                "the CA certificate and key do not belong together",
                "load the key that was saved with this certificate",
            )
        return cls(cert=cert, key=key)

    def issue_server_cert(
        self, hosts: list[str], *, common_name: str | None = None
    ) -> tuple[bytes, bytes]:
        """A serving certificate for ``hosts`` (DNS names and IP addresses).

        Returns ``(cert_pem, key_pem)``; ``cert_pem`` holds the leaf only.
        """
        if not hosts:
            raise CertificateError("a server certificate needs at least one host name or IP")
        return self._issue(
            subject_cn=common_name or hosts[0],
            orgs=[],
            sans=_san_entries(hosts),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
        )

    def issue_client_cert(self, common_name: str, orgs: Sequence[str] = ()) -> tuple[bytes, bytes]:
        """A client certificate; Kubernetes reads CN as the user and O as groups."""
        return self._issue(
            subject_cn=common_name, orgs=orgs, sans=[], usage=ExtendedKeyUsageOID.CLIENT_AUTH
        )

    def _issue(
        self,
        *,
        subject_cn: str,
        orgs: Sequence[str],
        sans: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
    ) -> tuple[bytes, bytes]:
        key = _new_key()
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, subject_cn))
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _LEAF_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_ca(common_name: str) -> CA:
    """A fresh self-signed CA named ``common_name``."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return CA(cert=cert, key=key)
