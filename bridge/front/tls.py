"""The bridge's own certificate authority, so ``https://{domainName}/{stage}`` reaches it.

API Gateway's WebSocket samples build their ``@connections`` client from the event:
``endpoint_url = "https://" + domainName + "/" + stage``. For that URL to reach the bridge
its port speaks TLS (see :mod:`bridge.front.listener`), with a certificate the handler's
SDK accepts. The bridge makes a certificate authority once per ``state_dir``
(``<state_dir>/front/ca.pem``, its key readable by the owner alone) and a server
certificate from it at each start, for the API's domain name, ``localhost``,
``127.0.0.1``, ``::1`` and this host's name.

A client trusts it through ``<state_dir>/front/ca-bundle.pem``: the usual public
authorities (certifi's bundle) plus the bridge's, so the same variable still lets the
function reach AWS. :func:`trust_environment` gives the variables that point the AWS
SDKs at it (``AWS_CA_BUNDLE`` for boto3, botocore and the AWS CLI, ``NODE_EXTRA_CA_CERTS``
for Node.js, which adds to its own list); the ``runtime`` target sets them for the
functions it runs when the configuration has a WebSocket API. Variables that replace the
whole system store (``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``) are left alone: a function
may rely on the system's own authorities.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["LocalCA", "default_names", "trust_environment"]

_CA_NAME = "trigger-bridge local CA"
_CA_YEARS = 10
_SERVER_DAYS = 365


@dataclass(frozen=True)
class LocalCA:
    """A certificate authority kept in ``folder``; :meth:`ensure` makes or loads it."""

    folder: Path

    @property
    def cert_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def key_path(self) -> Path:
        return self.folder / "ca.key"

    @property
    def bundle_path(self) -> Path:
        return self.folder / "ca-bundle.pem"

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> LocalCA:
        """The authority of ``state_dir``, by absolute paths: they go into the environment
        of functions that run in folders of their own."""
        return cls(Path(state_dir).absolute() / "front")

    def ensure(self) -> None:
        """Make the authority and the bundle unless they exist (raises ``OSError``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.cert_path.exists() and self.key_path.exists()):
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _CA_NAME)])
            now = datetime.datetime.now(datetime.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365 * _CA_YEARS))
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
                .sign(key, hashes.SHA256())
            )
            _write_private(self.key_path, _key_pem(key))
            _write_atomic(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))
        bundle = Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n"
        _write_atomic(self.bundle_path, bundle + self.cert_path.read_bytes())

    def server_context(self, names: list[str]) -> ssl.SSLContext:
        """A server ``SSLContext`` with a fresh certificate for ``names`` (host names or IP
        addresses; ports are dropped), signed by this authority."""
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=_SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        chain = cert.public_bytes(serialization.Encoding.PEM)
        # load_cert_chain reads files only: a private temporary one, gone at once
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "server.pem"
            _write_private(path, _key_pem(key) + chain)
            context.load_cert_chain(path)
        return context


def trust_environment(ca: LocalCA) -> dict[str, str]:
    """Variables that make the usual SDKs trust the bridge's authority (and the public
    ones): for a function's environment, where it does not set them itself."""
    return {"AWS_CA_BUNDLE": str(ca.bundle_path), "NODE_EXTRA_CA_CERTS": str(ca.cert_path)}


def default_names(domain_name: str) -> list[str]:
    """The names a server certificate covers: the domain name's host first."""
    host = domain_name.rsplit(":", 1)[0] if domain_name.count(":") == 1 else domain_name
    host = host.strip("[]") or "localhost"
    names = [host, "localhost", "127.0.0.1", "::1", socket.gethostname()]
    return list(dict.fromkeys(names))


def _alt_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
