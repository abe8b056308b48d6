"""The scorers against ``score_values`` run here; the process scorer with a real child process."""

import asyncio
import os
import signal

import numpy as np
import orjson
import pytest

from recsys_faust.ranking.maths.foldin import FoldIn
from recsys_faust.ranking.runtime.scorer import ProcessScorer, ScoringProcessError, make_scorer
from recsys_faust.ranking.maths.scores import BatchQuery
from recsys_faust.ranking.model.active import Catalogue, ScoringModel
from recsys_faust.ranking.runtime.ready_values import score_values
from recsys_faust.ranking.runtime.pack import PackSpec, pack_profiles
from recsys_faust.transitions.index import TransitionIndex, entry_key, history_key
from recsys_faust.settings import EventWeights

ITEMS, FACTORS = 300, 8


def model(seed: int, version: str = "") -> ScoringModel:
    rng = np.random.default_rng(seed)
    foldin = FoldIn(rng.normal(size=(ITEMS, FACTORS)).astype(np.float32), regularization=0.5, alpha=10.0)
    catalogue = Catalogue(np.asarray([f"p{i}" for i in range(ITEMS)], dtype=object),
                          np.asarray([f"c{i % 7}" for i in range(ITEMS)], dtype=object))
    return ScoringModel(version or f"v{seed}", foldin, catalogue)


NOW = 1_700_000_000.0


def expected(m: ScoringModel, q: BatchQuery):
    return score_values(m, q, NOW)


def query(seed: int, users: int = 40) -> BatchQuery:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, size=users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(0, ITEMS, size=offsets[-1]).astype(np.int64)
    weights = rng.uniform(0.5, 3.0, size=offsets[-1])
    return BatchQuery(items=items, weights=weights, offsets=offsets, seen=items, seen_offsets=offsets, n=20)


def same(result, want) -> bool:
    return result.lists == want.lists and result.factors == want.factors and len(result.lists) > 0


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def wait_for(predicate, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("mode", ["inline", "thread", "process"])
async def test_every_scorer_returns_what_score_values_returns(mode):
    scorer = make_scorer(mode)
    scorer.start()
    try:
        m1, m2 = model(1), model(2)
        # Submitted back to back (the pipeline does this): answers must match their requests.
        futures = [scorer.submit(m, query(seed), NOW) for seed, m in enumerate([m1, m2, m1, m2])]
        results = await asyncio.gather(*futures)
        for seed, (result, m) in enumerate(zip(results, [m1, m2, m1, m2])):
            assert same(result, expected(m, query(seed)))
    finally:
        await scorer.close()


async def test_the_scoring_process_runs_nicer_than_the_worker_by_the_setting_and_still_scores():
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    for nice, want in ((0, mine), (7, min(19, mine + 7))):
        scorer = make_scorer("process", nice=nice)
        try:
            m = model(5)
            assert same(await scorer.score(m, query(3), NOW), expected(m, query(3)))
            assert os.getpriority(os.PRIO_PROCESS, scorer.pid) == want
            assert scorer.status()["nice"] == nice  # what /api/health shows
        finally:
            await scorer.close()


async def test_process_scorer_resends_a_model_the_child_no_longer_holds():
    scorer = ProcessScorer()
    try:
        models = [model(i) for i in range(4)]
        for m in models:  # the child keeps the last two
            assert same(await scorer.score(m, query(7), NOW), expected(m, query(7)))
        assert same(await scorer.score(models[0], query(8), NOW), expected(models[0], query(8)))
        assert scorer.restarts == 0
    finally:
        await scorer.close()


async def test_a_killed_scoring_process_is_replaced_and_the_batch_scored_again():
    scorer = ProcessScorer()
    try:
        m = model(3)
        await scorer.score(m, query(1), NOW)
        first = scorer.pid
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: not pid_alive(first))
        result = await scorer.score(m, query(2), NOW)  # the new child gets the model again
        assert same(result, expected(m, query(2)))
        assert scorer.restarts == 1 and scorer.pid not in (None, first)
        assert scorer.status() == {"mode": "process", "pid": scorer.pid, "restarts": 1, "fallbacks": 0,
                                   "inline_batches": 0, "packed_batches": 0, "nice": 0}
    finally:
        await scorer.close()


async def test_a_batch_the_child_cannot_score_raises_with_its_traceback_and_the_next_one_works():
    scorer = ProcessScorer()
    try:
        m = model(4)
        bad = query(5)
        bad = BatchQuery(items=bad.items + ITEMS, weights=bad.weights, offsets=bad.offsets,
                         seen=bad.seen, seen_offsets=bad.seen_offsets, n=bad.n)  # indices out of range
        with pytest.raises(ScoringProcessError, match="IndexError"):
            await scorer.score(m, bad, NOW)
        assert same(await scorer.score(m, query(6), NOW), expected(m, query(6)))
        assert scorer.restarts == 0
    finally:
        await scorer.close()


async def test_without_a_working_scoring_process_batches_are_scored_in_the_worker():
    scorer = ProcessScorer(child_module="recsys_faust.ranking.no_such_module")  # every child exits at once
    try:
        m = model(6)
        for seed in (1, 2):
            assert same(await scorer.score(m, query(seed), NOW), expected(m, query(seed)))
        status = scorer.status()
        assert status["fallbacks"] == 2 and status["restarts"] >= 2 and status["pid"] is None
    finally:
        await scorer.close()


async def test_closing_the_scorer_ends_the_scoring_process():
    scorer = ProcessScorer()
    await scorer.score(model(5), query(1), NOW)
    pid = scorer.pid
    assert pid is not None and pid_alive(pid)
    await scorer.close()
    assert not pid_alive(pid)
    assert scorer.status()["pid"] is None


def test_the_scoring_process_does_not_outlive_a_sigkilled_worker():
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", """
import asyncio
from recsys_faust.ranking.runtime.scorer import ProcessScorer

async def main():
    scorer = ProcessScorer()
    scorer.start()
    while scorer.pid is None:
        await asyncio.sleep(0.02)
    print(scorer.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert pid_alive(child)
        parent.send_signal(signal.SIGKILL)  # the parent alone, not its process group
        parent.wait(10)
        deadline = time.monotonic() + 10
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child), "the scoring process outlived its worker"
    finally:
        if parent.poll() is None:
            parent.kill()


# -- batches packed in the scoring process, against its copy of the worker's transition index --

SPEC = PackSpec(EventWeights(), 20, (1.0, 0.75))
DAY = 86_400.0


class View:
    """The model as the transition index's arrays see it (version and item index)."""

    def __init__(self, m: ScoringModel) -> None:
        self.version = m.version
        self.index = {pid: i for i, pid in enumerate(m.catalogue.item_ids.tolist())}


def profiles(seed: int, users: int = 60) -> list[dict]:
    """Users with a few days of views and purchases over the catalogue (and some unknown items)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        rows = []
        for j in range(int(rng.integers(1, 9))):
            pid = f"p{rng.integers(0, ITEMS)}" if rng.random() < 0.9 else f"new{rng.integers(0, 5)}"
            rows.append([pid, "purchase" if rng.random() < 0.3 else "view", float(j // 3) * DAY + j, "", None])
        out.append({"recent": rows})
    return out


def local_pack(index: TransitionIndex, m: ScoringModel, batch: list[dict]):
    view = View(m)
    return pack_profiles(batch, SPEC, index=view.index, shipped_indptr=None,
                         item_arrays=lambda pid: index.item_arrays(pid, view))


def change_entries(index: TransitionIndex, seed: int, held: dict) -> None:
    """Entries put, changed in place and put again (as a micro-batch does), deleted, and an older
    copy offered (refused), some for unknown items; a user's history (never an entry)."""
    rng = np.random.default_rng(seed)
    for n in range(150):
        item = f"p{rng.integers(0, 60)}" if rng.random() < 0.95 else "new1"
        key = entry_key(item, int(rng.integers(0, 3)))
        entry = held.get(key)
        if entry is None or rng.random() < 0.2:
            entry = held[key] = {"item": item, "next": {}, "applied": {}}
        entry["applied"]["t:0"] = seed * 1_000 + n
        for _ in range(int(rng.integers(1, 4))):
            nxt = f"p{rng.integers(0, ITEMS)}" if rng.random() < 0.9 else "new2"
            entry["next"][nxt] = entry["next"].get(nxt, 0) + 1
        index.put(key, entry)
    gone = sorted(held)[0]
    index.put(gone, None)
    del held[gone]
    key = sorted(held)[0]
    index.put(key, {"item": held[key]["item"], "next": {"p1": 99}, "applied": {"t:0": -1}})  # older: refused
    index.put(history_key("u1"), {"rows": [], "applied": {}})


def test_a_copy_fed_the_changes_packs_what_the_index_it_follows_packs():
    index, copy = TransitionIndex(), TransitionIndex()
    index.listener = copy.put_raw
    m, held = model(9), {}
    for seed in range(3):
        change_entries(index, seed, held)
        want_rows, want = local_pack(index, m, profiles(seed))
        rows, got = local_pack(copy, m, profiles(seed))
        assert rows == want_rows and len(rows) > 20
        for field in ("items", "weights", "offsets", "seen", "trans_query", "trans_query_offsets",
                      "trans_items", "trans_scores", "trans_slot_offsets"):
            assert np.array_equal(getattr(got, field), getattr(want, field)), field
        assert len(want.trans_items) > 30  # the streamed successors took part
    assert copy.pairs == index.pairs and len(copy) == len(index)


async def test_the_scoring_process_packs_large_batches_as_the_worker_would_across_changes_and_a_restart():
    index, m, held = TransitionIndex(), model(10), {}
    change_entries(index, 0, held)  # before the child starts: it starts from the whole index
    scorer = ProcessScorer()
    scorer.follow(index)
    scorer.start()
    try:
        async def check(seed: int) -> None:
            batch = profiles(seed)
            want_rows, q = local_pack(index, m, batch)
            raws = [orjson.dumps(p) for p in batch]
            rows, values = await scorer.submit_profiles(m, raws, SPEC, NOW, lambda: local_pack(index, m, batch))
            assert rows == want_rows and same(values, score_values(m, q, NOW))

        await check(1)
        for seed in (2, 3):  # changes handed over before the batch that follows them
            change_entries(index, seed, held)
            await check(seed)
        first = scorer.pid
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: not pid_alive(first))
        change_entries(index, 4, held)  # while no child holds a copy
        await check(4)
        assert scorer.restarts == 1 and scorer.pid not in (None, first)
        small = profiles(5, users=10)  # a small batch is packed and scored in the worker
        rows, values = await scorer.submit_profiles(m, [orjson.dumps(p) for p in small], SPEC, NOW,
                                                    lambda: local_pack(index, m, small))
        want_rows, q = local_pack(index, m, small)
        assert rows == want_rows and same(values, score_values(m, q, NOW))
        assert scorer.status()["packed_batches"] == 4 and scorer.status()["inline_batches"] == 1
    finally:
        await scorer.close()
