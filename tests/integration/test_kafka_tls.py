"""TLS to Kafka, end to end, with CA verification: the worker, `topics apply`, `replay`,
`train --publish` and the client producers all connect through TLS only; events flow and
answers come back; a client that does not trust the CA is refused.

Tansu 0.6's own TLS did not complete a handshake here, so TLS is terminated in front of it by
stunnel (Debian's stunnel4) with a throwaway CA and server certificate made with
`cryptography`, and Tansu advertises the TLS address: every connection a client makes, the
metadata-directed ones included, goes through TLS. What is proven is this project's client side.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_faust.devstack.broker import DevBroker
from recsys_faust.devstack.ports import free_port, wait_for_port
from recsys_faust.devstack.workers import WorkerProcess

from .helpers import get, wait_until

pytestmark = pytest.mark.integration


def make_ca_and_server_cert(out: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recsys-faust test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = out / "ca.pem", out / "server.pem", out / "server.key"
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(cert.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_path, cert_path, key_path


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if stunnel is None:
        pytest.skip("!!! NO STUNNEL: install Debian's stunnel4 to run the TLS test (scripts/test.sh does, as root)")
    work = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_ca_and_server_cert(work)
    tls_port = free_port()
    broker = DevBroker(log_path=work / "broker.log", advertised_port=tls_port).start()
    conf = work / "stunnel.conf"
    conf.write_text(f"foreground = yes\npid =\ndebug = warning\n[kafka]\naccept = 127.0.0.1:{tls_port}\n"
                    f"connect = 127.0.0.1:{broker.port}\ncert = {cert}\nkey = {key}\n")
    proc = subprocess.Popen([stunnel, str(conf)], stdout=open(work / "stunnel.log", "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_port(tls_port, timeout_s=10)
        env = {"KAFKA_BROKER": f"kafka://127.0.0.1:{tls_port}", "KAFKA_SECURITY_PROTOCOL": "SSL",
               "KAFKA_SSL_CAFILE": str(ca), "RECSYS_REPLICATION_FACTOR": "1", "RECSYS_USER_PARTITIONS": "4",
               "RECSYS_ENV_FILE": "", "RECSYS_PRODUCER_IDEMPOTENCE": "false"}
        yield {"env": env, "work": work, "plain_port": broker.port, "tls_port": tls_port}
    finally:
        proc.terminate()
        proc.wait(5)
        broker.stop()


def cli(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys_faust", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_everything_speaks_tls_with_ca_verification(tls_broker, tmp_path):
    env = tls_broker["env"]
    # A client that does not trust the CA is refused: the certificate really is verified.
    untrusting = {**env, "KAFKA_SSL_CAFILE": ""}
    refused = cli(untrusting, "topics", "apply", timeout=120)
    assert refused.returncode != 0 and "cannot reach the broker" in refused.stderr, refused.stderr
    applied = cli(env, "topics", "apply")
    assert applied.returncode == 0, applied.stderr
    worker = WorkerProcess("w1", env, tmp_path / "w1", log_path=tmp_path / "w1.log").start()
    try:
        worker.wait_ready()
        replayed = cli(env, "replay", "--users", "60", "--seed", "3")
        assert replayed.returncode == 0, replayed.stderr
        # train --publish from a dataset file, over TLS
        csv = tmp_path / "shop.csv"
        from recsys_faust.client.datasets import ShopSpec, synthetic_events
        events = [e for e in synthetic_events(ShopSpec(users=60, seed=3)) if e[0] != "user-event"]
        csv.write_text("user_id,item_id,rating,timestamp,category\n" + "".join(
            f"{o['user_id']},{o['product_id']},1,{o['timestamp']},{o.get('category') or ''}\n" for _, o in events))
        trained = cli({**env, "RECSYS_MODELS_DIR": str(tmp_path / "models"), "RECSYS_ALS_FACTORS": "8"},
                      "train", "--data", str(csv), "--publish", "--no-eval")
        assert trained.returncode == 0, trained.stderr
        version = next(p.name for p in (tmp_path / "models").iterdir() if p.is_dir())
        wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == version, 60,
                   what="the model published over TLS")
        user = events[0][1]["user_id"]
        status, body = get(f"{worker.url}/api/recommendations/{user}")
        assert status == 200 and body["model_version"] == version and body["items"]
        status, profile = get(f"{worker.url}/api/users/{user}/profile")
        assert status == 200 and profile["counts"]
        # the client producers of recsys_faust.client, over TLS
        probe = (
            "import asyncio\nfrom recsys_faust.client.producers import ProductEventProducer\n"
            "async def main():\n    async with ProductEventProducer.from_env() as p:\n"
            "        await p.send_view('tls-user', 'tls-item', category='c1')\nasyncio.run(main())\n")
        sent = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env}, capture_output=True,
                              text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: get(f"{worker.url}/api/users/tls-user/profile")[0] == 200, 30,
                   what="the client producer's event")
        assert worker.alive()
        # Nothing used the plaintext port but stunnel itself: the broker advertises only TLS.
        health = get(f"{worker.url}/api/health")[1]
        assert health["broker"]["url"].endswith(f":{tls_broker['tls_port']}")
    finally:
        worker.stop()
