"""`recsys-faust topics apply` against Apache Kafka: creates, is idempotent, reports mismatches, and
fails with Kafka's own reason when the broker refuses (replication factor 3 on one broker)."""

import os
import subprocess
import sys

import pytest

from pathlib import Path

from recsys_faust.devstack.kafka_broker import KafkaCluster
from recsys_faust.kafka.topics import load_topics

#: every topic topics.yaml declares (tests/unit/kafka/test_topics.py checks which)
DECLARED = len(load_topics(Path(__file__).resolve().parents[2] / "topics.yaml").topics)

pytestmark = pytest.mark.integration


def apply(broker, *args, rf: str = "1"):
    env = {**os.environ, "KAFKA_BROKER": broker.url}
    return subprocess.run([sys.executable, "-m", "recsys_faust", "topics", "apply", "--replication-factor", rf, *args],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    with KafkaCluster(tmp_path_factory.mktemp("kafka")) as cluster:
        yield cluster


def test_replication_factor_above_the_broker_count_fails_with_kafkas_reason(kafka):
    out = apply(kafka, "--partitions", "4", rf="3")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "refused to create" in out.stderr and "InvalidReplicationFactor" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "created" not in out.stdout


def test_topics_apply_creates_then_is_idempotent_and_reports_mismatches(kafka):
    broker = kafka
    dry = apply(broker, "--partitions", "4", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("(dry run)") == DECLARED == 15
    first = apply(broker, "--partitions", "4")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == DECLARED and "amazon-dead-letters" in first.stdout
    second = apply(broker, "--partitions", "4")
    assert second.returncode == 0 and "created" not in second.stdout
    assert second.stdout.count("ok ") == DECLARED
    wrong = apply(broker, "--partitions", "6")
    assert wrong.returncode == 1
    assert "MISMATCH amazon-product-views: partitions 4 != 6 declared" in wrong.stdout


def test_topics_apply_says_when_the_broker_is_unreachable():
    env = {**os.environ, "KAFKA_BROKER": "kafka://127.0.0.1:1"}
    out = subprocess.run([sys.executable, "-m", "recsys_faust", "topics", "apply"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "cannot reach the broker" in out.stderr and "Traceback" not in out.stderr
