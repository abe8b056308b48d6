"""Where a micro-batch's ALS maths runs: in a scoring process (default), a thread, or inline.

``score_batch`` is NumPy, and NumPy drops the GIL inside its larger calls, so a scoring thread
was the first way to overlap the maths with the event loop. Measured on the full Amazon stream
(py-spy, per-batch timers), the thread spent 110 ms of wall time on 38 ms of CPU per batch: it
gives the GIL back at each of its ~150 NumPy calls and waits for a busy event loop to hand it
over again, and the Python between those calls holds up the loop in turn. A child process has
its own interpreter, so neither waits for the other: the same batch costs a 48 ms round trip
(pickled index arrays out, vectors and top-k back: a few hundred KB), and the worker went from
4,583 to 5,626-5,882 events/s in A/B runs on the same stream.

The model's item factors (2.2 MB for the Amazon catalogue at 64 factors) travel once per model
version: the child keeps the last two versions it was handed, and a call naming a version it
does not hold (a new child after a crash) is answered "missing" and repeated with
the model. A child that dies is replaced and the batch scored again; scoring is a pure function
of its inputs, so a repeat cannot change state twice.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import struct
import sys
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Optional, Protocol

from ..settings import SCORING_MODES
from .als import FoldIn
from .scoring import BatchQuery, BatchResult, score_batch

log = logging.getLogger(__name__)

#: A frame on the scoring process's pipes: an 8-byte big-endian length, then a pickle.
FRAME_HEADER = struct.Struct(">Q")


class Scorer(Protocol):
    mode: str

    def submit(self, version: str, foldin: FoldIn, query: BatchQuery) -> "asyncio.Future[BatchResult]":
        """Start scoring now (the event loop goes on with other work); the future has the result."""

    async def score(self, version: str, foldin: FoldIn, query: BatchQuery) -> BatchResult: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def status(self) -> dict: ...


class InlineScorer:
    """On the event loop itself: no overlap, no second core (tests, a one-core container)."""

    mode = "inline"

    def submit(self, version: str, foldin: FoldIn, query: BatchQuery) -> "asyncio.Future[BatchResult]":
        fut = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(score_batch(foldin, query))
        except Exception as exc:  # noqa: BLE001 - raised where the future is awaited
            fut.set_exception(exc)
        return fut

    async def score(self, version: str, foldin: FoldIn, query: BatchQuery) -> BatchResult:
        return await self.submit(version, foldin, query)

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def status(self) -> dict:
        return {"mode": self.mode}


class ThreadScorer:
    """On one scoring thread: overlaps the loop only where NumPy drops the GIL."""

    mode = "thread"

    def __init__(self) -> None:
        self._executor: Optional[Executor] = None

    def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsys-scoring")

    def submit(self, version: str, foldin: FoldIn, query: BatchQuery) -> "asyncio.Future[BatchResult]":
        self.start()
        return asyncio.get_running_loop().run_in_executor(self._executor, score_batch, foldin, query)

    async def score(self, version: str, foldin: FoldIn, query: BatchQuery) -> BatchResult:
        return await self.submit(version, foldin, query)

    def close(self) -> None:
        if self._executor is not None:
            # A batch being scored finishes (the thread is joined at interpreter exit anyway).
            self._executor.shutdown(wait=False)
            self._executor = None

    def status(self) -> dict:
        return {"mode": self.mode}


class ScoringProcessError(RuntimeError):
    """The scoring process failed a batch, or died twice in a row."""


class _Child:
    """One scoring process: its pipes, the answers it owes (in request order), its models."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiting: deque[asyncio.Future] = deque()
        self.models: set[str] = set()  # versions it holds
        self.reader = asyncio.ensure_future(self._read_answers())

    async def _read_answers(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                head = await stdout.readexactly(FRAME_HEADER.size)
                answer = pickle.loads(await stdout.readexactly(FRAME_HEADER.unpack(head)[0]))
                fut = self.waiting.popleft()
                if not fut.done():
                    fut.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            gone = ChildGone(self, f"the scoring process (pid {self.proc.pid}) exited: {exc!r}")
        except Exception as exc:  # noqa: BLE001 - handed to every waiting batch
            gone = ChildGone(self, f"reading from the scoring process failed: {exc!r}")
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(gone)

    def send(self, version: str, foldin: FoldIn, query: BatchQuery,
             with_model: bool = False) -> "asyncio.Future[tuple]":
        """Write one request now; the future gets its answer."""
        stdin = self.proc.stdin
        assert stdin is not None
        model = foldin if with_model or version not in self.models else None
        payload = pickle.dumps((version, model, query), protocol=pickle.HIGHEST_PROTOCOL)
        fut: asyncio.Future[tuple] = asyncio.get_running_loop().create_future()
        try:
            # Not drained: at most a couple of batches (a few hundred KB each) are in flight.
            stdin.write(FRAME_HEADER.pack(len(payload)) + payload)
        except (ConnectionError, RuntimeError) as exc:
            fut.set_exception(ChildGone(self, f"writing to the scoring process failed: {exc!r}"))
            return fut
        if model is not None:
            self.models.add(version)
        self.waiting.append(fut)
        return fut

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class ChildGone(Exception):
    """The scoring process exited or its pipe broke."""

    def __init__(self, child: _Child, message: str) -> None:
        super().__init__(message)
        self.child = child


class ProcessScorer:
    """In a child process (``python -m recsys_faust.model.scoring_child``) over its stdin/stdout.

    Not ``multiprocessing``: its spawn start re-imports the parent's main script (a worker run
    from a script without a ``__main__`` guard would fail to start its child) and fork is unsafe
    in a worker with threads and open databases. A plain child is explicit: requests are
    length-prefixed pickles on its stdin, answers come back in order on its stdout, and it exits
    when its stdin closes, so it never outlives the worker, even a SIGKILLed one.
    """

    mode = "process"

    def __init__(self) -> None:
        self._child: Optional[_Child] = None
        self._starting: Optional[asyncio.Future] = None
        self.restarts = 0

    @property
    def pid(self) -> Optional[int]:
        """The scoring process's pid (for /api/health and the bench's memory figure)."""
        child = self._child
        return child.proc.pid if child is not None and child.proc.returncode is None else None

    def start(self) -> None:
        """Start the child now (its imports take about a second) rather than on the first batch."""
        if self._child is None and self._starting is None:
            self._starting = asyncio.ensure_future(self._spawn())

    async def _spawn(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "recsys_faust.model.scoring_child",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            self._child = _Child(proc)
            log.info("scoring process started (pid %d)", proc.pid)
        finally:
            self._starting = None

    async def _ensure(self) -> _Child:
        self.start()
        if self._starting is not None:
            await asyncio.shield(self._starting)
        assert self._child is not None
        return self._child

    def submit(self, version: str, foldin: FoldIn, query: BatchQuery) -> "asyncio.Future[BatchResult]":
        first = None
        if self._child is not None:
            # The child is up: the request leaves now, before the loop turns to other work.
            first = (self._child, self._child.send(version, foldin, query))
        return asyncio.ensure_future(self._score(version, foldin, query, first))

    async def score(self, version: str, foldin: FoldIn, query: BatchQuery) -> BatchResult:
        return await self.submit(version, foldin, query)

    async def _score(self, version: str, foldin: FoldIn, query: BatchQuery,
                     first: Optional[tuple[_Child, "asyncio.Future[tuple]"]]) -> BatchResult:
        for attempt in (1, 2):
            try:
                if first is None:
                    child = await self._ensure()
                    first = (child, child.send(version, foldin, query))
                child, sent = first
                answer = await sent
                if answer[0] == "missing":  # the child does not hold the model (any more)
                    answer = await child.send(version, foldin, query, with_model=True)
            except ChildGone as exc:
                first = None
                log.error("%s; starting another and scoring the batch again", exc)
                await self._discard(exc.child)
                if attempt == 2:
                    raise ScoringProcessError(str(exc)) from exc
                continue
            if answer[0] == "error":
                raise ScoringProcessError(f"the scoring process failed a batch: {answer[1]}")
            return answer[1]
        raise AssertionError("unreachable")

    async def _discard(self, child: _Child) -> None:
        """Drop a child that failed (once, however many batches saw it fail)."""
        if self._child is child:
            self._child = None
            self.restarts += 1
        await child.kill()

    def close(self) -> None:
        """Close the child's stdin: it finishes the batch at hand and exits."""
        if self._starting is not None:
            self._starting.cancel()
            self._starting = None
        child, self._child = self._child, None
        if child is not None and child.proc.stdin is not None and not child.proc.stdin.is_closing():
            child.proc.stdin.close()

    def status(self) -> dict:
        return {"mode": self.mode, "pid": self.pid, "restarts": self.restarts}


def make_scorer(mode: str) -> Scorer:
    """The scorer for ``RECSYS_SCORING`` (process, thread or inline)."""
    if mode == "process":
        return ProcessScorer()
    if mode == "thread":
        return ThreadScorer()
    if mode == "inline":
        return InlineScorer()
    raise ValueError(f"unknown scoring mode {mode!r}; expected one of {', '.join(SCORING_MODES)}")
