"""TLS for every link off loopback, with the mesh key as the certificate authority.

The mesh's CA certificate is self-signed by the mesh key (Ed25519): anyone who knows the
mesh's public key (a joiner, from its invite) can check that a CA certificate is the
mesh's by comparing keys, so no public CA and no manual certificate handling is needed.
Each server (a hub, or a leaf's own nats-server when it accepts routes) gets a
certificate for its own key, signed by the mesh key, naming the addresses others reach
it at; it serves clients and leaf nodes with it, and routes authenticate both ways with
it (mutual TLS).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import IntegrityError
from ..identity import SigningKey
from .keyring import write_secret

__all__ = ["CA_FILE", "ServerTls", "ca_certificate", "check_ca", "issue_server_cert"]

CA_FILE = "ca.pem"
CA_YEARS = 20
SERVER_DAYS = 365
"""A server certificate lasts a year; a hub asks for a new one when it restarts past
two thirds of that."""


def _private(key: SigningKey) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(key.seed)


def ca_certificate(mesh: SigningKey) -> bytes:
    """The mesh's CA certificate (PEM), self-signed by the mesh key. Deterministic in
    its key and subject, so every copy made from the same mesh key says the same."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"motes mesh {mesh.id}")])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_private(mesh).public_key())
        .serial_number(int.from_bytes(mesh.fingerprint[:8], "big") | 1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(_private(mesh), None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def check_ca(pem: bytes, mesh_key: bytes) -> None:
    """``IntegrityError`` unless ``pem`` is a CA certificate of the mesh whose public
    key is ``mesh_key``, self-signed by it."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        public = cert.public_key()
        if not isinstance(public, ed25519.Ed25519PublicKey):
            raise IntegrityError("the mesh's CA certificate", "its key is not Ed25519")
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if raw != mesh_key:
            raise IntegrityError("the mesh's CA certificate", "it is not the mesh key's")
        public.verify(cert.signature, cert.tbs_certificate_bytes)
    except (ValueError, InvalidSignature) as exc:
        raise IntegrityError("the mesh's CA certificate", str(exc) or "bad signature") from None


def issue_server_cert(mesh: SigningKey, server_key: bytes, names: list[str], label: str) -> bytes:
    """A certificate (PEM) for the server whose Ed25519 public key is ``server_key``,
    valid for ``names`` (IP addresses or host names), for serving and for routes."""
    if not names:
        raise ValueError("a server certificate names at least one address")
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"motes mesh {mesh.id}")])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)]))
        .issuer_name(issuer)
        .public_key(ed25519.Ed25519PublicKey.from_public_bytes(server_key))
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(_private(mesh), None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A server's TLS files in ``dir``: its key (0600), its certificate, the mesh CA."""

    dir: Path

    @property
    def key(self) -> Path:
        return self.dir / "server.key"

    @property
    def cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def ca(self) -> Path:
        return self.dir / CA_FILE

    def exists(self) -> bool:
        return self.key.exists() and self.cert.exists() and self.ca.exists()

    def server_key(self) -> SigningKey:
        """This server's own key, made here on first use (it never leaves the machine)."""
        from ..identity import KeyKind

        return SigningKey.load_or_create(self.dir / "server.seed", KeyKind.NODE)

    def write(self, cert: bytes, ca: bytes) -> None:
        key = self.server_key()
        pem = _private(key).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_secret(self.key, pem)
        self.cert.write_bytes(cert)
        self.ca.write_bytes(ca)

    def names(self) -> list[str]:
        """The addresses the current certificate is valid for."""
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        return out + list(san.get_values_for_type(x509.DNSName))
