"""The model lifecycle on two real workers: publish, roll back with `models activate`, survive a
restart, reload from one worker's models dir onto both, prune the topic's history."""

from __future__ import annotations

import json
import time

import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import cli, get, http, produce_events, wait_until, write_shop_csv

pytestmark = pytest.mark.integration
END = time.time() - 60
TOKEN = "lifecycle-token"


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory):
    events = synthetic_events(ShopSpec(users=200, items=120, categories=6, events_per_user=10, seed=31), end=END)
    return write_shop_csv(tmp_path_factory.mktemp("data") / "shop.csv", events)


def served(worker) -> str:
    return get(f"{worker.url}/api/health")[1]["model_version"]


def train(stack, shop_csv, models_dir) -> str:
    before = {p.name for p in models_dir.iterdir()}
    out = cli(stack, "train", "--data", str(shop_csv), "--factors", "16", "--publish", "--no-eval", models_dir=models_dir)
    assert out.returncode == 0, out.stderr + out.stdout
    (version,) = {p.name for p in models_dir.iterdir() if (p / "manifest.json").exists()} - before
    return version


def listed(stack, models_dir) -> list[dict]:
    out = cli(stack, "models", "list", "--json", models_dir=models_dir)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_publish_activate_restart_reload_and_prune_act_on_every_worker(stack, shop_csv, tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    env = {"RECSYS_API_TOKEN": TOKEN, "RECSYS_MODELS_DIR": str(models_dir)}
    workers = [stack.add_worker("w1", extra_env=env), stack.add_worker("w2", extra_env=env)]

    def everywhere(version: str, what: str) -> None:
        wait_until(lambda: all(served(w) == version for w in workers), 60, what=f"both workers on {version} ({what})")

    v1 = train(stack, shop_csv, models_dir)
    everywhere(v1, "published")
    time.sleep(1.1)  # versions are named by the second
    v2 = train(stack, shop_csv, models_dir)
    everywhere(v2, "published")
    rows = listed(stack, models_dir)
    assert [r["model_version"] for r in rows] == [v2, v1] and rows[0]["active"] and not rows[1]["active"]

    # Roll back: one record on the topic, every worker follows.
    out = cli(stack, "models", "activate", v1, models_dir=models_dir)
    assert out.returncode == 0, out.stderr
    everywhere(v1, "activated")
    body = get(f"{workers[1].url}/api/models")[1]
    assert body["model_version"] == v1
    assert {r["model_version"]: (r["active"], r["pinned"]) for r in body["versions"]} == {v1: (True, True), v2: (False, False)}

    # A restarted worker comes back on the activated version, not on the newest.
    workers[1].stop()
    workers[1] = stack.add_worker("w2", extra_env=env)
    wait_until(lambda: served(workers[1]) == v1, 60, what="the restarted worker on the activated version")
    assert get(f"{workers[1].url}/api/health")[1]["models"] == {"announced": sorted([v1, v2]), "pinned": v1,
                                                                "refused": {}, "verified": False}

    # Reload on one worker publishes the newest artifact of its models dir: both switch.
    status, body = http("POST", f"{workers[0].url}/api/reload-models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body == {"model_version": v2, "switched": True, "published": True}, body
    everywhere(v2, "reloaded on w1")

    # Prune: only the newest stays on the topic; a new worker reads only it.
    out = cli(stack, "models", "prune", "--keep", "1", models_dir=models_dir)
    assert out.returncode == 0 and v1 in out.stdout, out.stderr + out.stdout
    assert [r["model_version"] for r in listed(stack, models_dir)] == [v2]
    fresh = stack.add_worker("w3", extra_env=env)
    wait_until(lambda: served(fresh) == v2, 60, what="a new worker on the newest version")
    assert get(f"{fresh.url}/api/health")[1]["models"] == {"announced": [v2], "pinned": None, "refused": {},
                                                          "verified": False}

    # An unknown version is refused with the reason, and nothing changes.
    out = cli(stack, "models", "activate", "als-no-such-version", models_dir=models_dir)
    assert out.returncode != 0 and "is not on amazon-model-updates" in out.stderr
    assert all(served(w) == v2 for w in [*workers, fresh])


def mapped_paths(pid: int) -> set[str]:
    """The files a process has mapped (Linux /proc/PID/maps)."""
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}


def test_a_model_over_the_message_limit_ships_by_reference_and_both_processes_map_one_copy(stack, shop_csv, tmp_path):
    """Past RECSYS_MAX_MODEL_BYTES the announcement names the version directory of the shared
    models dir; the worker checks and maps the factors file, and so does its scoring process
    (the factors are not pickled across), so a large catalogue is held once."""
    models_dir = tmp_path / "shared-models"
    models_dir.mkdir()
    # alone in the group: a worker of the test before (other models dir) would own some users
    for other in stack.workers:
        if other.alive():
            other.stop()
    worker = stack.add_worker("byref", extra_env={"RECSYS_MODELS_DIR": str(models_dir)})
    before = {p.name for p in models_dir.iterdir()}
    out = cli(stack, "train", "--data", str(shop_csv), "--factors", "16", "--publish", "--no-eval",
              models_dir=models_dir, env={"RECSYS_MAX_MODEL_BYTES": "20000"})
    assert out.returncode == 0, out.stderr + out.stdout
    (version,) = {p.name for p in models_dir.iterdir()} - before
    wait_until(lambda: served(worker) == version, 60, what="the worker on the model announced by reference")
    (row,) = [r for r in get(f"{worker.url}/api/models")[1]["versions"] if r["model_version"] == version]
    factors = str(models_dir / version / "item_factors.npy")
    assert row["shipped"] == "reference" and row["bytes"] > 20000
    assert factors in mapped_paths(worker.proc.pid)
    # events make the worker score with it (batches of over 32 users go to the scoring
    # process): the scoring process maps the same file
    events = [("purchase", {"event_id": f"ref-{i}", "user_id": f"ref-user-{i % 300}", "product_id": f"p{i % 50:05d}",
                            "quantity": 1, "timestamp": END + i}) for i in range(1_200)]
    produce_events(stack.broker.bootstrap, events)
    answer = wait_until(lambda: (lambda b: b if b.get("model_version") == version and "als" in b.get("strategy", "")
                                 else None)(get(f"{worker.url}/api/recommendations/ref-user-3")[1]),
                        60, what="an ALS answer from the model shipped by reference")
    assert answer["items"]
    scoring_pid = get(f"{worker.url}/api/health")[1]["scoring"]["pid"]
    assert scoring_pid and scoring_pid != worker.proc.pid
    wait_until(lambda: factors in mapped_paths(scoring_pid), 60, what="the scoring process mapping the factors")
    worker.stop()
