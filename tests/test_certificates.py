"""The local stack's certificate authority and the server certificates it signs
(realtime_voting/running/local_stack/certificates.py), checked by real TLS handshakes in memory (Python's ssl,
OpenSSL's verification with the host name checked, as libpq's verify-full does). They need no service."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from realtime_voting.core.settings import REPO_ROOT, Settings
from realtime_voting.running import processes
from realtime_voting.running.local_stack import certificates

HOSTS = ["localhost", "127.0.0.1", "::1", "postgres"]


def issue(folder: Path, hosts: list[str] = HOSTS) -> tuple[certificates.Authority, Path, Path]:
    """An authority in ``folder/tls`` and a server certificate of it in ``folder/server``."""
    authority = certificates.ensure_authority(folder / "tls")
    (folder / "server").mkdir(exist_ok=True)
    certificate, key = folder / "server" / "server.crt", folder / "server" / "server.key"
    certificates.ensure_server_certificate(authority, hosts, certificate, key)
    return authority, certificate, key


def handshake(certificate: Path, key: Path, trusted: Path, host: str) -> None:
    """A TLS handshake between a server with ``certificate`` and a client that trusts ``trusted`` and checks that
    the certificate names ``host``; raises ``ssl.SSLCertVerificationError`` where the client refuses."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certificate, key)
    client_context = ssl.create_default_context(cafile=trusted)  # CERT_REQUIRED, with the host name checked
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname=host)
    server = server_context.wrap_bio(to_server, to_client, server_side=True)
    finished: set[str] = set()
    for _ in range(10):  # TLS 1.3 needs two round trips; each pass moves every byte one way or the other
        for name, end in (("client", client), ("server", server)):
            if name not in finished:
                try:
                    end.do_handshake()
                    finished.add(name)
                except ssl.SSLWantReadError:
                    pass
        if len(finished) == 2:
            return
    raise AssertionError(f"the handshake did not finish: only {sorted(finished)} did")


@pytest.mark.parametrize("host", HOSTS)
def test_a_client_trusting_the_authority_accepts_the_server_by_each_of_its_names(tmp_path, host):
    authority, certificate, key = issue(tmp_path)
    handshake(certificate, key, authority.certificate_file, host)


def test_a_client_refuses_the_server_by_a_name_the_certificate_does_not_give(tmp_path):
    authority, certificate, key = issue(tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|IP address mismatch"):
        handshake(certificate, key, authority.certificate_file, "voting.example.org")


def test_a_client_trusting_another_authority_refuses_the_server(tmp_path):
    _, certificate, key = issue(tmp_path)
    stranger = certificates.ensure_authority(tmp_path / "stranger")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        handshake(certificate, key, stranger.certificate_file, "localhost")


def test_private_keys_are_readable_by_their_owner_only_and_certificates_by_anyone(tmp_path):
    authority, certificate, key = issue(tmp_path)
    modes = {path.name: path.stat().st_mode & 0o777
             for path in (authority.certificate_file, tmp_path / "tls" / certificates.AUTHORITY_KEY, certificate, key)}
    assert modes == {"ca.pem": 0o644, "ca-key.pem": 0o600, "server.crt": 0o644, "server.key": 0o600}


def test_a_second_start_keeps_the_authority_and_the_certificate(tmp_path):
    authority, certificate, key = issue(tmp_path)
    files = (authority.certificate_file, tmp_path / "tls" / certificates.AUTHORITY_KEY, certificate, key)
    before = [path.read_bytes() for path in files]
    again = certificates.ensure_authority(tmp_path / "tls")
    assert certificates.ensure_server_certificate(again, HOSTS, certificate, key) is False
    assert [path.read_bytes() for path in files] == before


def test_a_certificate_is_issued_again_for_a_new_name_and_for_a_new_authority(tmp_path):
    authority, certificate, key = issue(tmp_path, ["localhost"])
    assert certificates.ensure_server_certificate(authority, ["localhost", "db.internal"], certificate, key)
    handshake(certificate, key, authority.certificate_file, "db.internal")

    # The authority deleted (a reset of the tls folder): the server's certificate follows the new one.
    for path in (tmp_path / "tls").iterdir():
        path.unlink()
    renewed = certificates.ensure_authority(tmp_path / "tls")
    assert renewed.certificate.subject != authority.certificate.subject
    assert certificates.ensure_server_certificate(renewed, ["localhost"], certificate, key)
    handshake(certificate, key, renewed.certificate_file, "localhost")


def test_a_certificate_without_its_key_is_issued_again(tmp_path):
    authority, certificate, key = issue(tmp_path)
    _, _, other_key = issue(tmp_path / "other")
    key.write_bytes(other_key.read_bytes())
    assert certificates.ensure_server_certificate(authority, HOSTS, certificate, key)
    handshake(certificate, key, authority.certificate_file, "localhost")


def test_the_stacks_keys_stay_out_of_git_and_out_of_the_docker_build():
    state_dir = Settings.from_env({}).state_dir.relative_to(REPO_ROOT)
    keys = [state_dir / "tls" / certificates.AUTHORITY_KEY, state_dir / "data" / "postgres" / "server.key"]
    for key in keys:
        ignored = processes.run_program(["git", "check-ignore", "-q", str(key)])
        assert ignored.returncode == 0, f"git would commit {key}"
    ignored_by_docker = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert f"{state_dir}/" in ignored_by_docker, f"docker compose build would send {state_dir}/ to the builder"
