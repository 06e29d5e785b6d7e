"""A primary behind Redis Sentinel that takes TLS only, and an ACL user: every client
(the learner's and the API's blocking one, the alert feed's asyncio one, the API's request
pipeline) reaches it as the URL says, rediss://user@sentinel/db.

Real servers: a TLS-only redis-server and one sentinel watching it, with a certificate
made for the test and trusted through SSL_CERT_FILE (how OpenSSL's default paths are
pointed elsewhere)."""

import asyncio
import datetime
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from api.resp import RespPipeline, pack
from learner.redisconn import async_sentinels, connect
from stream.settings import StreamSettings
from tests.support import free_port, wait_for

PASSWORD = "tls-test-password"
SERVICE = "headrace"


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _start(argv: list[str], ping: redis.Redis) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"{argv[0]} exited with {server.returncode}")
        try:
            return bool(ping.ping())
        except (redis.RedisError, OSError):
            return False

    wait_for(answers, f"{argv[0]} {argv[1]} to answer")
    return server


@pytest.fixture
def tls_sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamSettings]:
    cert, key = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = [
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
    ]
    primary_port, sentinel_port = free_port(), free_port()
    primary_conf = tmp_path / "primary.conf"
    primary_conf.write_text(
        "port 0\n"
        f"tls-port {primary_port}\n"
        "bind 127.0.0.1\n"
        "tls-auth-clients no\n"
        "save ''\n"
        "appendonly no\n"
        f"dir {tmp_path}\n"
        f"requirepass {PASSWORD}\n"
        f"user alice on >{PASSWORD} ~* &* +@all\n"
    )
    sentinel_conf = tmp_path / "sentinel.conf"
    sentinel_conf.write_text(
        f"port {sentinel_port}\n"
        "bind 127.0.0.1\n"
        f"dir {tmp_path}\n"
        f"requirepass {PASSWORD}\n"
        # The sentinel itself reaches the primary over TLS.
        "tls-replication yes\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
        f"sentinel auth-pass {SERVICE} {PASSWORD}\n"
    )
    primary_ping = redis.Redis(
        host="127.0.0.1", port=primary_port, password=PASSWORD, ssl=True, socket_timeout=2
    )
    sentinel_ping = redis.Redis(host="127.0.0.1", port=sentinel_port, password=PASSWORD)
    servers = [_start(["redis-server", str(primary_conf), *tls], primary_ping)]
    try:
        servers.append(
            _start(["redis-server", str(sentinel_conf), "--sentinel", *tls], sentinel_ping)
        )
        wait_for(
            lambda: sentinel_ping.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE),
            "the sentinel to name the primary",
        )
        yield StreamSettings(
            redis_url=f"rediss://alice@127.0.0.1:{sentinel_port}/2",
            redis_password=SecretStr(PASSWORD),
            redis_sentinels=f"127.0.0.1:{sentinel_port}",
            redis_sentinel_service=SERVICE,
        )
    finally:
        primary_ping.close()
        sentinel_ping.close()
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(30)


def test_blocking_client_reaches_the_tls_primary_as_the_urls_user(
    tls_sentinel: StreamSettings,
) -> None:
    client = connect(tls_sentinel, socket_connect_timeout=2, socket_timeout=5)
    try:
        assert client.acl_whoami() == "alice"
        client.set("probe", b"db 2")
        assert client.get("probe") == b"db 2"
    finally:
        client.close()


def test_asyncio_and_pipeline_clients_reach_it_alike(tls_sentinel: StreamSettings) -> None:
    addresses = tls_sentinel.sentinel_addresses
    password = tls_sentinel.redis_password_value

    async def both() -> tuple[object, list[object]]:
        # The alert feed's client.
        sentinels = async_sentinels(addresses, tls_sentinel.redis_url, password, 2)
        feed = sentinels.master_for(SERVICE, socket_timeout=5)
        await feed.set("probe", b"asyncio")
        whoami = await feed.acl_whoami()
        await feed.aclose()
        # The request path's pipeline: its own protocol, the same TLS and user.
        pipeline = RespPipeline(
            tls_sentinel.redis_url,
            5.0,
            password=password,
            sentinels=addresses,
            service=SERVICE,
        )
        try:
            replies = await pipeline.execute(pack("ACL", "WHOAMI") + pack("GET", "probe"), 2)
        finally:
            pipeline.close()
        return whoami, replies

    whoami, replies = asyncio.run(both())
    assert whoami == "alice"
    # Database 2, where the asyncio client wrote: the URL's database, for both.
    assert replies == [b"alice", b"asyncio"]
