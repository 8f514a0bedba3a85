"""Certificates for tests of Redis reached by TLS: a CA made for the test and a server
certificate it signs for 127.0.0.1 (with the `cryptography` package)."""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA that signed `certificate`
    certificate: Path
    key: Path
    other_ca: Path  # a CA that signed nothing here


def make_tls_files(directory: Path) -> TlsFiles:
    ca, ca_key = make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    certificate, key = make_server_certificate(directory, ca, ca_key)
    return TlsFiles(directory / "ca.pem", certificate, key, directory / "other-ca.pem")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_ca(directory: Path, name: str):
    """A self-signed CA certificate (written to <name>.pem) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    (directory / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate, key


def make_server_certificate(directory: Path, ca, ca_key) -> tuple[Path, Path]:
    """Redis's certificate for 127.0.0.1, signed by `ca`: its address as an IP name (Python's
    check) and as a DNS name (nginx's, which checks DNS names only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName(LOOPBACK)])
    certificate = (x509.CertificateBuilder().subject_name(_name("redis")).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(names, critical=False).sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "redis.pem", directory / "redis.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path
