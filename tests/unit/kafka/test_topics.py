from pathlib import Path


from recsys_faust.events.model import INPUT_TOPICS, TOPIC_SERVED
from recsys_faust.kafka.topics import load_topics

ROOT = Path(__file__).resolve().parents[3]


def test_topics_yaml_declares_contract_topics_copartitioned():
    plan = load_topics(ROOT / "topics.yaml")
    names = {t.name for t in plan.topics}
    assert set(INPUT_TOPICS) <= names and "amazon-dead-letters" in names and len(names) == 13
    # the served answers are folded with the user's events: co-partitioned with them
    assert len({plan[n].partitions for n in (*INPUT_TOPICS, TOPIC_SERVED)}) == 1 and plan[TOPIC_SERVED].per_user
    dev = load_topics(ROOT / "topics.yaml", partitions=4, replication_factor=1)
    assert all(dev[n].partitions == 4 for n in INPUT_TOPICS)
    assert all("min.insync.replicas" not in t.config for t in dev.topics)
