"""rediss:// against a real redis-server with TLS, certificates made by the test.

Debian's redis-server 7 is built with TLS; where a binary is not, the test is skipped and says
so (a skipped test proves nothing).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis_server import free_port

from claude_force_magic.cache import RedisResponseCache
from claude_force_magic.errors import RedisUnavailableError
from claude_force_magic.redis_link import connect

from .redis_helpers import SECRET, fetch, store

pytestmark = pytest.mark.redis


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_certificates(directory: Path, ca_name: str = "test CA") -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, paths["key"])
    return paths


@dataclass
class TlsRedis:
    port: int
    ca: Path
    directory: Path

    def url(self, ca: Path | None = None) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={ca or self.ca}"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    certs = make_certificates(tmp_path)
    port = free_port()
    log = tmp_path / "redis.log"
    args = [
        binary,
        "--port", "0",
        "--tls-port", str(port),
        "--bind", "127.0.0.1",
        "--tls-cert-file", str(certs["cert"]),
        "--tls-key-file", str(certs["key"]),
        "--tls-ca-cert-file", str(certs["ca"]),
        "--tls-auth-clients", "no",
        "--dir", str(tmp_path),
        "--save", "",
        "--appendonly", "no",
        "--logfile", str(log),
    ]  # fmt: skip
    errors = (tmp_path / "stderr").open("wb")  # a binary without TLS says so here
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors)
    try:
        server = TlsRedis(port, certs["ca"], tmp_path)
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                text = (tmp_path / "stderr").read_text(errors="replace")
                text += log.read_text(errors="replace") if log.exists() else ""
                if "tls" in text.lower():
                    pytest.skip(f"this redis-server has no TLS support: {text[-200:]}")
                raise RuntimeError(f"redis-server exited with {process.returncode}: {text}")
            try:
                connect(server.url()).close()
                break
            except RedisUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        process.wait(10)
        errors.close()


def test_the_cache_over_tls(tls_redis: TlsRedis) -> None:
    with RedisResponseCache(tls_redis.url(), cache_secret=SECRET) as cache:
        assert cache.target.tls
        store(cache, "t", "over TLS")
        got = fetch(cache, "t")
        assert got is not None and got["response"] == "over TLS"
        assert cache.get_stats()["hits"] == 1


def test_a_server_certificate_from_another_ca_is_refused(
    tls_redis: TlsRedis, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    stranger = make_certificates(other, "someone else's CA")["ca"]
    with pytest.raises(RedisUnavailableError, match="certificate"):
        RedisResponseCache(tls_redis.url(stranger), cache_secret=SECRET)


def test_plain_redis_to_a_tls_port_is_unavailable(tls_redis: TlsRedis) -> None:
    with pytest.raises(RedisUnavailableError):
        RedisResponseCache(f"redis://127.0.0.1:{tls_redis.port}/0", cache_secret=SECRET)
