"""A throwaway PKI for TLS tests: a CA, server and client certificates, and a self-signed one.

Keys are EC P-256, which is quick to generate. Certificates are valid from one hour
ago (to allow for clock skew) for one day. Files are written in PEM format, private
keys unencrypted and readable by the owner only.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The DNS name in the server certificates. It resolves nowhere: clients connect to
# 127.0.0.1 and pass this name as tls_server_name.
SERVER_NAME = "nats.salt-nats.test"


@dataclass(frozen=True)
class CertFiles:
    """The PEM files of one certificate and its private key."""

    cert_file: Path
    key_file: Path

    @property
    def key_text(self) -> str:
        return self.key_file.read_text(encoding="ascii")


@dataclass(frozen=True)
class Pki:
    """The files of the test PKI."""

    ca_file: Path
    server: CertFiles
    client: CertFiles
    other_ca_client: CertFiles
    self_signed_server: CertFiles

    @property
    def private_keys(self) -> list[str]:
        """Every private key in PEM format, to check that none reaches a log."""
        certs = (self.server, self.client, self.other_ca_client, self.self_signed_server)
        return [cert.key_text for cert in certs]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "salt-nats tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey):
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
    cert_file = directory / f"{stem}.pem"
    key_file = directory / f"{stem}-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return CertFiles(cert_file, key_file)


def _make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    common_name: str,
    usage: x509.ObjectIdentifier,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    dns_names: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Make an end-entity certificate; with ``issuer`` None it is self-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    issuer_name = issuer[0].subject if issuer else subject
    signing_key = issuer[1] if issuer else key

    builder = (
        _builder(subject, issuer_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if dns_names:
        names = [x509.DNSName(name) for name in dns_names]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256()), key


def make_pki(directory: Path) -> Pki:
    """Write a CA and the certificates signed by it, and a self-signed one, to ``directory``.

    The server certificates name only :data:`SERVER_NAME`, not 127.0.0.1, so a
    client that connects to 127.0.0.1 must send ``tls_server_name`` to pass the host
    name check. ``other_ca_client`` is a client certificate from a second CA that
    the servers do not trust.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca("salt-nats test CA")
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))

    server = _make_leaf("nats server", ExtendedKeyUsageOID.SERVER_AUTH, ca, (SERVER_NAME,))
    client = _make_leaf("salt-master", ExtendedKeyUsageOID.CLIENT_AUTH, ca)
    other_ca = _make_ca("untrusted test CA")
    other_client = _make_leaf("stranger", ExtendedKeyUsageOID.CLIENT_AUTH, other_ca)
    self_signed = _make_leaf(
        "self-signed nats server", ExtendedKeyUsageOID.SERVER_AUTH, None, ("localhost",)
    )
    return Pki(
        ca_file=ca_file,
        server=_write(directory, "server", *server),
        client=_write(directory, "client", *client),
        other_ca_client=_write(directory, "other-client", *other_client),
        self_signed_server=_write(directory, "self-signed", *self_signed),
    )
