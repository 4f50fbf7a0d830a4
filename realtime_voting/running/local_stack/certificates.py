"""The local stack's own certificate authority, and the server certificates it signs, as PEM files.

The stack's services call these at every start (``local_stack``): the authority is made once, in the stack's
``tls`` folder (``Settings.tls_dir``: ``ca.pem``, and its key ``ca-key.pem``), and a server's certificate is issued
again whenever it is missing, was not signed by that authority, does not name every host the server is reached by,
or is about to expire. So a client that trusts ``ca.pem`` can check both the certificate and the server's name
(libpq's ``sslmode=verify-full`` with ``POSTGRES_SSLROOTCERT``), and deleting the folder is a full reset.

Nothing here is committed or built into an image: each stack makes its own at its first start, under its state
folder, which git and Docker ignore. Private keys are unencrypted PKCS#8 PEM, readable by their owner only
(0600): what PostgreSQL's ``ssl_key_file`` and Kafka's PEM key stores (``ssl.keystore.key``) both read.
Keys are ECDSA P-256: quick to make, and understood by OpenSSL, Java and librdkafka alike.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

AUTHORITY_CERTIFICATE = "ca.pem"
AUTHORITY_KEY = "ca-key.pem"
AUTHORITY_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=365)
# A server certificate this close to its end is issued again at the next start, before any client refuses it.
RENEW_BEFORE = timedelta(days=30)
# Clocks of containers and hosts may disagree a little; a certificate valid from "now" could look premature.
BACKDATE = timedelta(minutes=5)
PRIVATE = 0o600
PUBLIC = 0o644


@dataclass(frozen=True)
class Authority:
    """A certificate authority whose certificate and key are files: ``certificate_file`` is what clients trust."""

    certificate_file: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def authority_certificate_file(folder: Path) -> Path:
    """Where the authority of ``folder`` keeps its certificate (made or not)."""
    return folder / AUTHORITY_CERTIFICATE


def ensure_authority(folder: Path) -> Authority:
    """The authority in ``folder``, made there first if it has none.

    Several services of one stack may start at once and share the folder: a lock makes one of them make it and
    the others read it, so that every certificate of the stack is signed by the same authority.
    """
    folder.mkdir(parents=True, exist_ok=True)
    certificate_file, key_file = authority_certificate_file(folder), folder / AUTHORITY_KEY
    with _locked(folder / ".lock"):
        if not (certificate_file.exists() and key_file.exists()):
            _make_authority(certificate_file, key_file)
            logger.info("made the stack's certificate authority %s", certificate_file)
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not an ECDSA key: delete {folder} to make a new authority")
        return Authority(certificate_file, x509.load_pem_x509_certificate(certificate_file.read_bytes()), key)


def ensure_server_certificate(authority: Authority, hosts: Iterable[str], certificate_file: Path,
                              key_file: Path) -> bool:
    """Make ``certificate_file`` and ``key_file`` hold a certificate of ``authority`` for every name and address in
    ``hosts``, issuing a new one only when the one there does not do; return whether one was issued."""
    hosts = list(dict.fromkeys(hosts))
    if _still_good(authority, hosts, certificate_file, key_file):
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    names = [_general_name(host) for host in hosts]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + SERVER_VALIDITY)
        # verify-full checks the host against these names (the common name is ignored when they are present).
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_signing=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
                       critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    # The key first: a certificate never stands beside a key that is not its own for longer than a rename.
    write_replacing(key_file, _pem_key(key), PRIVATE)
    write_replacing(certificate_file, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC)
    logger.info("issued %s for %s, signed by %s", certificate_file, ", ".join(hosts), authority.certificate_file)
    return True


def _make_authority(certificate_file: Path, key_file: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own, so that a user can tell two stacks' authorities apart (and OpenSSL never mixes them up).
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "realtime-voting"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"realtime-voting local stack CA {secrets.token_hex(4)}"),
    ])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + AUTHORITY_VALIDITY)
        # It signs the stack's server certificates and nothing else: no intermediate authority below it.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_signing=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_replacing(key_file, _pem_key(key), PRIVATE)
    write_replacing(certificate_file, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC)


def _still_good(authority: Authority, hosts: list[str], certificate_file: Path, key_file: Path) -> bool:
    """Whether the certificate there is this authority's, for every host, not near its end, and has its key."""
    if not (certificate_file.exists() and key_file.exists()):
        return False
    try:
        certificate = x509.load_pem_x509_certificate(certificate_file.read_bytes())
        certificate.verify_directly_issued_by(authority.certificate)
        named = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm, x509.ExtensionNotFound) as error:
        logger.info("issuing %s again: %s", certificate_file, str(error) or type(error).__name__)
        return False
    return (
        all(_general_name(host) in named for host in hosts)
        and certificate.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE
        and key.public_key() == certificate.public_key()
    )


def _key_usage(*, certificate_signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=certificate_signing, crl_sign=certificate_signing,
        encipher_only=False, decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    """An address as an address (what a client connecting to ``127.0.0.1`` looks for), a name as a name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_replacing(path: Path, content: bytes, mode: int) -> None:
    """Replace ``path`` with ``content`` at ``mode``: a new file, so that a key never sits for a moment under an
    older file's wider permissions, and a reader sees the old file or the new one, never half of one."""
    draft = path.with_name(f".{path.name}.draft")
    draft.unlink(missing_ok=True)
    with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as file:
        os.fchmod(file.fileno(), mode)  # exactly, whatever the umask
        file.write(content)
    os.replace(draft, path)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock, which several services sharing it (a cluster's nodes) take to write their files
    one at a time. Not around ``ensure_authority``, which takes it itself."""
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / ".lock"):
        yield


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
