"""`recsys-faust topics apply` against a real broker: creates, is idempotent, reports mismatches."""

import os
import subprocess
import sys

import pytest

from pathlib import Path

from recsys_faust.devstack.broker import DevBroker
from recsys_faust.kafka.topics import load_topics

#: every topic topics.yaml declares (tests/unit/kafka/test_topics.py checks which)
DECLARED = len(load_topics(Path(__file__).resolve().parents[2] / "topics.yaml").topics)

pytestmark = pytest.mark.integration


def apply(broker, *args):
    env = {**os.environ, "KAFKA_BROKER": broker.url}
    return subprocess.run([sys.executable, "-m", "recsys_faust", "topics", "apply", "--replication-factor", "1", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_topics_apply_creates_then_is_idempotent_and_reports_mismatches():
    with DevBroker() as broker:
        dry = apply(broker, "--partitions", "4", "--dry-run")
        assert dry.returncode == 0 and dry.stdout.count("(dry run)") == DECLARED == 13
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
