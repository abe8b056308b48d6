"""The worker's follower of amazon-model-updates loads models off the event loop, in order."""

import time

import numpy as np

from recsys_faust.ranking.model import artifact as art
from recsys_faust.ranking.model.active import ModelHolder
from recsys_faust.ranking.model.payload import encode, encode_reference
from recsys_faust.ranking.model.registry import ACTIVE_KEY, ModelRegistry
from recsys_faust.worker.replicas import ModelFollower


def _artifact(version: str, n: int = 50) -> art.ModelArtifact:
    rng = np.random.default_rng(len(version))
    return art.ModelArtifact(version, [f"p{i}" for i in range(n)], rng.normal(size=(n, 4)).astype(np.float32),
                             item_category=[None] * n)


def _served(holder: ModelHolder, version: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if holder.active is not None and holder.active.version == version:
            return True
        time.sleep(0.01)
    return False


def test_the_last_choice_is_served_whether_inline_or_by_reference(tmp_path):
    holder = ModelHolder()
    a, b = _artifact("v1"), _artifact("v2", n=80)
    first = {**encode(a, created_at=1.0), "published_at": 1.0}
    # v1's inline artifact is dropped from memory once v2 is chosen; the rollback reads it again
    follower = ModelFollower(ModelRegistry(), holder, tmp_path, refetch=lambda version: first)
    try:
        follower.on_records([("v1", first)])
        assert _served(holder, "v1")
        ref = {**encode_reference(b, art.save(b, tmp_path), created_at=2.0), "published_at": 2.0}
        follower.on_records([("v2", ref)])
        assert _served(holder, "v2") and len(holder.active.item_ids) == 80
        # a rollback and a roll-forward in one batch: only the newest choice is loaded
        follower.on_records([(ACTIVE_KEY, {"model_version": "v1", "activated_at": 3.0}),
                             (ACTIVE_KEY, {"model_version": "v2", "activated_at": 4.0})])
        follower.on_records([(ACTIVE_KEY, {"model_version": "v1", "activated_at": 5.0})])
        assert _served(holder, "v1")
    finally:
        follower.close()


def test_a_model_that_cannot_be_loaded_leaves_the_previous_one_served(tmp_path):
    holder = ModelHolder()
    follower = ModelFollower(ModelRegistry(), holder, tmp_path / "not-shared")
    try:
        follower.on_records([("v1", {**encode(_artifact("v1"), created_at=1.0), "published_at": 1.0})])
        assert _served(holder, "v1")
        b = _artifact("v2")
        ref = {**encode_reference(b, art.save(b, tmp_path), created_at=2.0), "published_at": 2.0}
        follower.on_records([("v2", ref)])  # its directory is not under this worker's models dir
        follower._executor.submit(lambda: None).result(timeout=10)  # the load has run
        assert holder.active.version == "v1"
        # once the volume is there, the next record on the topic loads it
        follower.models_dir = tmp_path
        follower.on_records([("other", None)])
        assert _served(holder, "v2")
    finally:
        follower.close()


def test_a_version_whose_artifact_was_dropped_is_read_again_when_chosen(tmp_path):
    holder = ModelHolder()
    sent = {v: {**encode(_artifact(v, n=20 + i), created_at=float(i)), "published_at": float(i)}
            for i, v in enumerate(("v1", "v2", "v3"), start=1)}
    asked: list[str] = []

    def refetch(version):
        asked.append(version)
        return sent[version]

    follower = ModelFollower(ModelRegistry(), holder, tmp_path, refetch=refetch)
    try:
        follower.on_records([(v, value) for v, value in sent.items()])
        assert _served(holder, "v3") and asked == []
        assert follower.registry.versions["v1"].get("stripped")
        follower.on_records([(ACTIVE_KEY, {"model_version": "v1", "activated_at": 10.0})])
        assert _served(holder, "v1") and asked == ["v1"] and len(holder.active.item_ids) == 21
    finally:
        follower.close()
