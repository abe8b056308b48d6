"""Kafka's own security, no proxy: TLS with CA verification, SASL/SCRAM-SHA-512 and ACLs.

Apache Kafka listens for clients on SASL_SSL only. Four principals: ``admin`` (the brokers' super
user; runs ``topics apply``), ``worker`` (everything a worker needs, but writing
``amazon-model-updates`` is denied), ``trainer`` (may write ``amazon-model-updates``), ``shop``
(may write the four input topics). Shown: a client with a wrong password or without the CA is
refused; the worker runs as ``worker``; the client producers as ``shop`` feed it; ``train
--publish`` as ``worker`` is refused by the ACL, as ``trainer`` it publishes and the worker
switches to the model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.devstack.kafka_broker import KafkaSecurity
from recsys_faust.devstack.stack import DevStack

from .helpers import get, wait_until
from .test_kafka_tls import make_ca_and_server_cert

pytestmark = pytest.mark.integration

USERS = {"admin": "admin-5f0c2a9e8b1d4c7f", "worker": "worker-9d3e1b7a2c6f4e08",
         "trainer": "trainer-1a7c5e9b3d2f6a84", "shop": "shop-7e2b9d4f1c8a3e56"}
INPUTS = ("amazon-user-events", "amazon-product-views", "amazon-purchases", "amazon-reviews")


def acls(stack: DevStack, ca: Path) -> None:
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                       ResourceType)

    admin = AdminClient({"bootstrap.servers": stack.broker.bootstrap, "security.protocol": "SASL_SSL",
                         "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "admin",
                         "sasl.password": USERS["admin"], "ssl.ca.location": str(ca)})

    def allow(kind, name, user, op, permission=AclPermissionType.ALLOW):
        return AclBinding(kind, name, ResourcePatternType.LITERAL, f"User:{user}", "*", op, permission)

    bindings = [
        allow(ResourceType.TOPIC, "*", "worker", AclOperation.ALL),
        allow(ResourceType.GROUP, "*", "worker", AclOperation.ALL),
        allow(ResourceType.BROKER, "kafka-cluster", "worker", AclOperation.ALL),   # librdkafka calls CLUSTER (4) BROKER
        allow(ResourceType.TOPIC, "amazon-model-updates", "worker", AclOperation.WRITE, AclPermissionType.DENY),
        *[allow(ResourceType.TOPIC, "amazon-model-updates", "trainer", op)
          for op in (AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.READ)],
        *[allow(ResourceType.TOPIC, t, "shop", op) for t in INPUTS for op in (AclOperation.WRITE, AclOperation.DESCRIBE)],
    ]
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    work = tmp_path_factory.mktemp("secured")
    ca, cert, key = make_ca_and_server_cert(work)
    keystore = work / "broker-keystore.pem"
    keystore.write_text(key.read_text() + cert.read_text())
    st = DevStack(work / "stack", partitions=4, database=False,
                  security=KafkaSecurity(keystore=keystore, truststore=ca, users=USERS)).start()
    acls(st, ca)
    yield st, ca
    st.stop()


def cli(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys_faust", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_tls_scram_and_acls_of_kafka_itself(secured, tmp_path):
    stack, ca = secured
    as_user = lambda user: {**stack.env, **stack.broker.client_env(user)}
    wrong = {**as_user("shop"), "KAFKA_SASL_PASSWORD": "not-the-password"}
    refused = cli(wrong, "topics", "apply", "--dry-run", timeout=120)
    assert refused.returncode != 0 and "cannot reach the broker" in refused.stderr, refused.stderr
    untrusting = {**as_user("admin"), "KAFKA_SSL_CAFILE": ""}
    refused = cli(untrusting, "topics", "apply", "--dry-run", timeout=120)
    assert refused.returncode != 0, refused.stderr
    applied = cli(as_user("admin"), "topics", "apply")
    assert applied.returncode == 0 and "MISMATCH" not in applied.stdout, applied.stdout + applied.stderr

    worker = stack.add_worker("w1", extra_env=stack.broker.client_env("worker"))
    probe = ("import asyncio\nfrom recsys_faust.client.producers import ProductEventProducer\n"
             "async def main():\n    async with ProductEventProducer.from_env() as p:\n"
             "        await p.send_view('sec-user', 'sec-item', category='c1')\nasyncio.run(main())\n")
    sent = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **as_user("shop")},
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: get(f"{worker.url}/api/users/sec-user/profile")[0] == 200, 60,
               what="the shop's event applied by the worker")

    events = [e for e in synthetic_events(ShopSpec(users=40, seed=9)) if e[0] != "user-event"]
    csv = tmp_path / "shop.csv"
    csv.write_text("user_id,item_id,rating,timestamp,category\n" + "".join(
        f"{o['user_id']},{o['product_id']},1,{o['timestamp']},{o.get('category') or ''}\n" for _, o in events))
    train = ["train", "--data", str(csv), "--publish", "--no-eval"]
    denied = cli({**as_user("worker"), "RECSYS_MODELS_DIR": str(tmp_path / "denied"), "RECSYS_ALS_FACTORS": "8"},
                 *train)
    assert denied.returncode != 0 and "authoriz" in (denied.stderr + denied.stdout).lower(), denied.stderr[-2000:]
    published = cli({**as_user("trainer"), "RECSYS_MODELS_DIR": str(tmp_path / "models"), "RECSYS_ALS_FACTORS": "8"},
                    *train)
    assert published.returncode == 0, published.stderr[-2000:]
    version = next(p.name for p in (tmp_path / "models").iterdir() if p.is_dir())
    wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == version, 60,
               what="the trainer's model on the worker")
    assert worker.alive()
