"""The Kafka launcher's pieces that need no JVM: one version everywhere, node configs."""

import re
from pathlib import Path

from recsys_faust.devstack.kafka_broker import KAFKA_VERSION, POM, KafkaCluster, _cluster_id

ROOT = Path(__file__).resolve().parents[3]


def test_the_pom_the_launcher_and_the_production_compose_file_name_one_kafka_version():
    pom = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text()).group(1)
    compose = re.search(r"image:\s*apache/kafka:(\S+)", (ROOT / "docker/docker-compose.yml").read_text()).group(1)
    assert pom == KAFKA_VERSION == compose


def test_three_nodes_are_voters_with_replication_three_and_two_in_sync(tmp_path):
    cluster = KafkaCluster(tmp_path, nodes=3)
    confs = [cluster.config(n) for n in cluster.nodes]
    voters = {c["controller.quorum.voters"] for c in confs}
    assert len(voters) == 1 and voters.pop().count("@127.0.0.1:") == 3
    assert {c["node.id"] for c in confs} == {"1", "2", "3"}
    assert all(c["min.insync.replicas"] == "2" and c["default.replication.factor"] == "3" for c in confs)
    assert cluster.replication_factor == 3 and cluster.bootstrap.count(",") == 2
    single = KafkaCluster(tmp_path / "one").config(KafkaCluster(tmp_path / "one").nodes[0])
    assert single["min.insync.replicas"] == "1" and single["offsets.topic.replication.factor"] == "1"


def test_cluster_ids_are_22_url_safe_characters():
    ids = {_cluster_id() for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)
