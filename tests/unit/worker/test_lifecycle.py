"""The guard around the worker's periodic jobs (worker/lifecycle.py)."""

import asyncio
import logging

import pytest

from recsys_faust.worker.lifecycle import periodic


async def test_a_periodic_job_that_raises_is_logged_and_does_not_raise(caplog):
    runs = []

    @periodic
    async def post_figures() -> None:
        runs.append(1)
        raise RuntimeError("the broker did not answer")

    with caplog.at_level(logging.ERROR, logger="recsys_faust"):
        await post_figures()   # a Faust timer whose body raised crashed the worker
        await post_figures()
    assert len(runs) == 2
    assert [r.getMessage() for r in caplog.records] == ["periodic job post_figures failed; it runs again at its next tick"] * 2
    assert post_figures.__name__ == "post_figures"   # Faust names the timer after it


async def test_a_cancelled_periodic_job_stays_cancelled():
    @periodic
    async def waits() -> None:
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(waits())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
