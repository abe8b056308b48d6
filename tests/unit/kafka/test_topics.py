from pathlib import Path


from recsys_faust.events.model import INPUT_TOPICS, TOPIC_CATALOGUE, TOPIC_ERASURES, TOPIC_SERVED
from recsys_faust.kafka.topics import load_topics

ROOT = Path(__file__).resolve().parents[3]


def test_topics_yaml_declares_contract_topics_copartitioned():
    plan = load_topics(ROOT / "topics.yaml")
    names = {t.name for t in plan.topics}
    assert set(INPUT_TOPICS) <= names and "amazon-dead-letters" in names and len(names) == 15
    # the served answers and the erasures are applied with the user's events: co-partitioned with them
    assert len({plan[n].partitions for n in (*INPUT_TOPICS, TOPIC_SERVED, TOPIC_ERASURES)}) == 1
    assert plan[TOPIC_SERVED].per_user and plan[TOPIC_ERASURES].per_user
    # an erasure outlives every input record it could meet again; the catalogue is all kept
    longest = max(int(plan[n].config["retention.ms"]) for n in INPUT_TOPICS)
    assert int(plan[TOPIC_ERASURES].config["retention.ms"]) >= longest
    assert plan[TOPIC_ERASURES].config["cleanup.policy"] == "compact,delete"
    assert plan[TOPIC_CATALOGUE].config["cleanup.policy"] == "compact"
    dev = load_topics(ROOT / "topics.yaml", partitions=4, replication_factor=1)
    assert all(dev[n].partitions == 4 for n in INPUT_TOPICS)
    assert all("min.insync.replicas" not in t.config for t in dev.topics)
