"""Signed model announcements on two real workers holding the trainer's public key: a signed
publication switches both; unsigned, wrongly signed, malformed, oversized and future-dated
records written straight to amazon-model-updates are each skipped with their reason while both
keep serving the model they had, also across a restart (the topic is read from its start)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.events.model import TOPIC_MODEL_UPDATES
from recsys_faust.ranking.model import artifact as art
from recsys_faust.ranking.model.announcement import ModelSigner, generate_pair
from recsys_faust.ranking.model.payload import encode

from .helpers import cli, get, produce, wait_until, write_shop_csv

pytestmark = pytest.mark.integration
PRIVATE, PUBLIC = generate_pair()
OTHER_PRIVATE, _ = generate_pair()


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory):
    events = synthetic_events(ShopSpec(users=150, items=80, categories=5, events_per_user=8, seed=7),
                              end=time.time() - 60)
    return write_shop_csv(tmp_path_factory.mktemp("data") / "shop.csv", events)


def health(worker) -> dict:
    return get(f"{worker.url}/api/health")[1]


def tiny(version: str, factors: int = 4, items: int = 5) -> dict:
    rng = np.random.default_rng(1)
    a = art.ModelArtifact(version, [f"p{i}" for i in range(items)], rng.normal(size=(items, factors)).astype(np.float32),
                          item_category=[None] * items)
    return encode(a, created_at=time.time())


def test_only_signed_announcements_reach_the_workers(stack, shop_csv, tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    env = {"RECSYS_MODEL_VERIFY_KEY": PUBLIC, "RECSYS_MODELS_DIR": str(models_dir)}
    workers = [stack.add_worker("s1", extra_env=env), stack.add_worker("s2", extra_env=env)]

    out = cli(stack, "train", "--data", str(shop_csv), "--factors", "8", "--publish", "--no-eval",
              models_dir=models_dir, env={"RECSYS_MODEL_SIGNING_KEY": PRIVATE})
    assert out.returncode == 0, out.stderr + out.stdout
    (v1,) = [p.name for p in models_dir.iterdir() if (p / "manifest.json").exists()]
    wait_until(lambda: all(health(w)["model_version"] == v1 for w in workers), 60, what="both on the signed model")

    signer, other = ModelSigner(PRIVATE), ModelSigner(OTHER_PRIVATE)
    hostile = {
        "unsigned": tiny("evil-unsigned"),
        "bad_signature": other.sign(tiny("evil-other-key")),
        "no_manifest": {"model_version": "zz-bad", "artifact_ref": {}, "published_at": "zz"},
        "too_many_factors": signer.sign(tiny("evil-wide", factors=2_000)),   # signed, still over the cap
        "key_is_not_the_version": signer.sign(tiny("evil-rekeyed")),
    }
    keys = {"key_is_not_the_version": "evil-renamed", "no_manifest": "zz-bad"}
    future = signer.sign({**tiny("evil-future"), "published_at": 1e18})  # signed: clamped, not refused
    records = [(TOPIC_MODEL_UPDATES, keys.get(reason, value["model_version"]).encode(), json.dumps(value).encode())
               for reason, value in hostile.items()]
    records.append((TOPIC_MODEL_UPDATES, b"evil-future", json.dumps(future).encode()))
    records.append((TOPIC_MODEL_UPDATES, b"__active__",
                    json.dumps({"model_version": "evil-unsigned", "activated_at": 1e18}).encode()))  # unsigned pin
    produce(stack.broker.bootstrap, records)

    def refused_all(worker) -> bool:
        got = health(worker)["models"]["refused"]
        return got.get("unsigned", 0) == 2 and all(got.get(r, 0) >= 1 for r in hostile)

    wait_until(lambda: all(refused_all(w) for w in workers), 60, what="every hostile record refused")
    # The future-dated one was signed: accepted with its time clamped to when it was written, so it
    # is the newest now; a publication written after it wins, as the registry orders by that time.
    wait_until(lambda: all(health(w)["model_version"] == "evil-future" for w in workers), 60,
               what="the signed, clamped record served")
    time.sleep(1.1)  # versions are named by the second
    out = cli(stack, "train", "--data", str(shop_csv), "--factors", "8", "--publish", "--no-eval",
              models_dir=models_dir, env={"RECSYS_MODEL_SIGNING_KEY": PRIVATE})
    assert out.returncode == 0, out.stderr + out.stdout
    (v2,) = {p.name for p in models_dir.iterdir() if (p / "manifest.json").exists()} - {v1}
    wait_until(lambda: all(health(w)["model_version"] == v2 for w in workers), 60, what="the later publication wins")
    for w in workers:
        doc = health(w)
        assert doc["models"]["verified"] is True and doc["status"] != "down"
        assert not any(v.startswith("evil-") and v != "evil-future" for v in doc["models"]["announced"])

    # A restart reads the whole topic again, hostile records included: it comes back on v2.
    workers[1].stop()
    workers[1] = stack.add_worker("s2", extra_env=env)
    wait_until(lambda: health(workers[1])["model_version"] == v2, 60, what="the restarted worker on v2")
    assert refused_all(workers[1])

    # A worker's own principal cannot sign: POST /api/reload-models on it publishes unsigned, refused.
    out = cli(stack, "train", "--data", str(shop_csv), "--factors", "8", "--publish", "--no-eval",
              models_dir=models_dir)  # no signing key
    assert out.returncode == 0, out.stderr + out.stdout
    wait_until(lambda: all(health(w)["models"]["refused"].get("unsigned", 0) >= 3 for w in workers), 60,
               what="the unsigned publication refused")
    assert all(health(w)["model_version"] == v2 for w in workers)
