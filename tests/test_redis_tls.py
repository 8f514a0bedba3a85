"""A Redis reached by TLS (TOLLGATE_REDIS_URL=rediss://…, TOLLGATE_REDIS_CA): a real redis-server
serving TLS only, with a certificate of a CA made here. The gateway's hot path and the control
plane verify it; a client without TLS, or trusting another CA, gets nothing."""
from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import Gateway, free_port, wait_for
from helpers import CACHE_SECONDS
from load import call

from control_plane import settings as settings_module
from control_plane.hot import connection

COST = 18_150  # load.body's chat at sandbox-chat's demo prices (tests/test_multi_node.py)
LOOPBACK = "127.0.0.1"


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


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """(port, the CA file that signed its certificate, another CA's file) of a redis-server that
    speaks TLS only."""
    directory = tmp_path_factory.mktemp("redis-tls")
    ca, ca_key = make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    cert_path, key_path = make_server_certificate(directory, ca, ca_key)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", LOOPBACK,
         "--tls-cert-file", str(cert_path), "--tls-key-file", str(key_path),
         "--tls-ca-cert-file", str(directory / "ca.pem"), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=(directory / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    client = redis.Redis(host=LOOPBACK, port=port, ssl=True, ssl_ca_certs=str(directory / "ca.pem"))
    wait_for(lambda: _answers(client), 10, "redis-server with TLS")
    yield port, directory / "ca.pem", directory / "other-ca.pem"
    proc.terminate()
    proc.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def env_for(port: int, ca_file: Path) -> dict[str, str]:
    return {"TOLLGATE_REDIS_URL": f"rediss://{LOOPBACK}:{port}/0", "TOLLGATE_REDIS_CA": str(ca_file)}


@pytest.mark.usefixtures("database_independent")
def test_the_gateway_bills_through_a_redis_reached_by_tls(tmp_path, own_database, tls_redis):
    port, ca_file, _other = tls_redis
    gw = Gateway(tmp_path / "gw", own_database, env_for(port, ca_file)).start()
    try:
        email = "tls@example.com"
        key = gw.create_customer(email, "1")
        time.sleep(CACHE_SECONDS)
        assert [call(gw.url, key, i)[0] for i in range(3)] == [200] * 3
        gw.wait_drained()
        assert [row["cost_nano"] for row in gw.usage_rows(key)] == [COST] * 3
        assert gw.balance_nano(email) == 1_000_000_000 - 3 * COST  # 999,945,550
        ok, report = gw.reconciled()
        assert ok, report
        assert gw.redis().dbsize() > 0  # the hot state is in this Redis, reached by TLS
    finally:
        gw.stop()


def test_redis_by_tls_is_verified_and_tls_only(tls_redis):
    port, ca_file, other_ca_file = tls_redis
    with pytest.raises(redis.ConnectionError):  # no TLS: the port does not speak plain Redis
        redis.Redis(host=LOOPBACK, port=port, socket_timeout=2).ping()
    trusting_other = settings_module.load(env_for(port, other_ca_file))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        connection.client(trusting_other).ping()
    assert connection.client(settings_module.load(env_for(port, ca_file))).ping() is True


def test_a_ca_file_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(settings_module.SettingsError, match="TOLLGATE_REDIS_CA must name a readable file"):
        settings_module.load({"TOLLGATE_HOME": str(tmp_path), "TOLLGATE_REDIS_URL": "rediss://redis.internal:6380/0",
                              "TOLLGATE_REDIS_CA": str(tmp_path / "missing.pem")})
