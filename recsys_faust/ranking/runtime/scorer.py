"""Where a micro-batch's ALS maths runs: in a scoring process (default), a thread, or inline.

A scorer takes a batch's packed query and returns the values to store for each scored user
(``serving/ready_values.py``: fold-in, top-k, the ready list and the vector, encoded).

``score_batch`` is NumPy, and NumPy drops the GIL inside its larger calls, so a scoring thread
was the first way to overlap the maths with the event loop. Measured on the full Amazon stream
(py-spy, per-batch timers), the thread spent 110 ms of wall time on 38 ms of CPU per batch: it
gives the GIL back at each of its ~150 NumPy calls and waits for a busy event loop to hand it
over again, and the Python between those calls holds up the loop in turn. A child process has
its own interpreter, so neither waits for the other: the same batch costs a 48 ms round trip
(pickled index arrays out, encoded values back: a few hundred KB). The child also turns indices
into product ids and encodes the values, work the event loop did before (5% of it).

The model (item factors and catalogue: 2.5 MB for the Amazon catalogue at 64 factors) travels
once per model version: the child keeps the last two versions it was handed, and a call naming
a version it does not hold is answered "missing" and repeated with the model. A child that dies
is replaced and the batch scored again; scoring is a pure function of its inputs, so a repeat
cannot change state twice.

Small batches stay in the worker: their maths (0.6 ms for 4 users, about 1.6 ms for 32) costs
less than the trip, and on a busy two-core machine each trip also waits for the scheduler to
run the child and then the worker again (measured at 500 events/s, 4-user batches: 0.9 ms
round trip on an idle machine, 20 to 50 ms beside the broker and a load generator; that wait
was most of the freshness figure). Under load the batches grow and go to the child.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import struct
import sys
from collections import deque
from pathlib import Path
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Optional, Protocol

from .ready_values import ScoredValues, score_values
from ...settings import SCORING_MODES
from .pack import PackSpec
from ..maths.scores import BatchQuery
from ..model.active import ScoringModel
from ...transitions.index import TransitionIndex

log = logging.getLogger(__name__)

#: Batches of at most this many users are scored on the event loop (see the module docstring).
INLINE_MAX_USERS = 32

#: A frame on the scoring process's pipes: an 8-byte big-endian length, then a pickle.
FRAME_HEADER = struct.Struct(">Q")

#: Packs a batch's query in the worker (its rows and the query): ``Ranker.pack`` bound to the batch.
LocalPack = Callable[[], tuple[list[int], BatchQuery]]
#: Writes one request to a scoring process (``with_model``: the model along); the future has its answer.
_Send = Callable[..., "asyncio.Future[tuple]"]


class Scorer(Protocol):
    mode: str

    def submit(self, model: ScoringModel, query: BatchQuery,
               generated_at: float) -> "asyncio.Future[ScoredValues]":
        """Start scoring now (the event loop goes on with other work); the future has the values."""

    async def score(self, model: ScoringModel, query: BatchQuery, generated_at: float) -> ScoredValues: ...

    def submit_profiles(self, model: ScoringModel, profiles: list[bytes], spec: PackSpec, generated_at: float,
                        local: LocalPack) -> "asyncio.Future[tuple[list[int], Optional[ScoredValues]]]":
        """Pack and score a batch of profiles (their JSON; ``local`` packs them in the worker):
        the future has the rows scored (positions in ``profiles``) and their values."""

    def start(self) -> None: ...

    async def close(self) -> None: ...

    def status(self) -> dict: ...


async def _with_rows(rows: list[int], scoring: "asyncio.Future[ScoredValues]") -> tuple[list[int], ScoredValues]:
    return rows, await scoring


def _pack_here(scorer: "Scorer", model: ScoringModel, local: LocalPack,
               generated_at: float) -> "asyncio.Future[tuple[list[int], Optional[ScoredValues]]]":
    """``submit_profiles`` for a batch packed by the worker itself (``local``)."""
    rows, query = local()
    if not rows:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        fut.set_result((rows, None))
        return fut
    return asyncio.ensure_future(_with_rows(rows, scorer.submit(model, query, generated_at)))


class InlineScorer:
    """On the event loop itself: no overlap, no second core (tests, a one-core container)."""

    mode = "inline"

    def submit(self, model: ScoringModel, query: BatchQuery,
               generated_at: float) -> "asyncio.Future[ScoredValues]":
        fut = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(score_values(model, query, generated_at))
        except Exception as exc:  # noqa: BLE001 - raised where the future is awaited
            fut.set_exception(exc)
        return fut

    async def score(self, model: ScoringModel, query: BatchQuery, generated_at: float) -> ScoredValues:
        return await self.submit(model, query, generated_at)

    def submit_profiles(self, model: ScoringModel, profiles: list[bytes], spec: PackSpec, generated_at: float,
                        local: LocalPack) -> "asyncio.Future[tuple[list[int], Optional[ScoredValues]]]":
        return _pack_here(self, model, local, generated_at)

    def start(self) -> None:
        pass

    async def close(self) -> None:
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

    def submit(self, model: ScoringModel, query: BatchQuery,
               generated_at: float) -> "asyncio.Future[ScoredValues]":
        self.start()
        return asyncio.get_running_loop().run_in_executor(self._executor, score_values, model, query, generated_at)

    async def score(self, model: ScoringModel, query: BatchQuery, generated_at: float) -> ScoredValues:
        return await self.submit(model, query, generated_at)

    def submit_profiles(self, model: ScoringModel, profiles: list[bytes], spec: PackSpec, generated_at: float,
                        local: LocalPack) -> "asyncio.Future[tuple[list[int], Optional[ScoredValues]]]":
        return _pack_here(self, model, local, generated_at)

    async def close(self) -> None:
        if self._executor is not None:
            # A batch being scored finishes (the thread is joined at interpreter exit anyway).
            self._executor.shutdown(wait=False)
            self._executor = None

    def status(self) -> dict:
        return {"mode": self.mode}


class ScoringProcessError(RuntimeError):
    """The scoring process raised on a batch (a bug: the same maths would raise in the worker)."""


#: Pipe capacity asked for each way (Linux F_SETPIPE_SZ; an unprivileged process gets at most
#: /proc/sys/fs/pipe-max-size, 1 MiB by default). With the default 64 KiB, a micro-batch's query
#: (a megabyte with the transition candidates of 1,300 users) went out 64 KiB per pass of the
#: event loop, which was busy folding the next batch: the scoring process got its input late and
#: the loop then waited for the scores (measured: 100-140 ms a batch, a fifth of the throughput).
PIPE_BYTES = 4 * 1024 * 1024


def _widen_pipe(pipe: Any) -> None:
    """Enlarge a pipe's buffer as far as the OS allows (no-op where it cannot)."""
    import fcntl

    setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or setsz is None:
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = 1024 * 1024
    for size in (PIPE_BYTES, limit):
        try:
            fcntl.fcntl(pipe.fileno(), setsz, size)
            return
        except OSError:
            continue


class _Child:
    """One scoring process: its pipes, the answers it owes (in request order), its models."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiting: deque[asyncio.Future] = deque()
        self.models: set[str] = set()  # versions it holds
        self.gone: Optional[ChildGone] = None  # set once its answers stopped for good
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
        self.gone = gone
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(gone)

    def send(self, model: ScoringModel, query: BatchQuery, generated_at: float,
             with_model: bool = False) -> "asyncio.Future[tuple]":
        """Write one scoring request now; the future gets its answer."""
        return self._request("score", model, query, generated_at, with_model)

    def send_pack(self, model: ScoringModel, profiles: list[bytes], spec: PackSpec, generated_at: float,
                  with_model: bool = False) -> "asyncio.Future[tuple]":
        """Write one pack-and-score request now (profiles as JSON); the answer is (rows, values)."""
        return self._request("pack", model, (profiles, spec), generated_at, with_model)

    def tell_index(self, updates: list[tuple[str, Optional[bytes]]], reset: bool) -> None:
        """Hand the child's transition index changes (``reset``: all of it), in order; no answer."""
        self._write(pickle.dumps(("index", updates, reset), protocol=pickle.HIGHEST_PROTOCOL))

    def _request(self, kind: str, model: ScoringModel, body: Any, generated_at: float,
                 with_model: bool) -> "asyncio.Future[tuple]":
        version = model.version
        attached = model if with_model or version not in self.models else None
        payload = pickle.dumps((kind, version, attached, body, generated_at), protocol=pickle.HIGHEST_PROTOCOL)
        fut: asyncio.Future[tuple] = asyncio.get_running_loop().create_future()
        if self.gone is not None:  # no answer would ever come
            fut.set_exception(self.gone)
            return fut
        try:
            self._write(payload)
        except (ConnectionError, RuntimeError) as exc:
            fut.set_exception(ChildGone(self, f"writing to the scoring process failed: {exc!r}"))
            return fut
        if attached is not None:
            self.models.add(version)
        self.waiting.append(fut)
        return fut

    def _write(self, payload: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        # Not drained: at most a couple of batches (a few hundred KB each) are in flight.
        stdin.write(FRAME_HEADER.pack(len(payload)) + payload)

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
    """In a child process (``python -m recsys_faust.ranking.runtime.scoring_process``) over its stdin/stdout.

    Not ``multiprocessing``: its spawn start re-imports the parent's main script (a worker run
    from a script without a ``__main__`` guard would fail to start its child) and fork is unsafe
    in a worker with threads and open databases. A plain child is explicit: requests are
    length-prefixed pickles on its stdin, answers come back in order on its stdout, and it exits
    when its stdin closes, so it never outlives the worker, even a SIGKILLed one.
    """

    mode = "process"

    def __init__(self, child_module: str = "recsys_faust.ranking.runtime.scoring_process", *,
                 inline_max_users: int = INLINE_MAX_USERS, nice: int = 0) -> None:
        self.child_module = child_module
        # The child runs this much nicer than the worker (scoring_child.py says why).
        self.nice = nice
        self.inline_max_users = inline_max_users
        self._inline = InlineScorer()
        self.inline_batches = 0  # small batches scored in the worker (counted for /api/health)
        self._child: Optional[_Child] = None
        self._starting: Optional[asyncio.Future] = None
        self.restarts = 0
        self.fallbacks = 0  # batches scored in the worker because no scoring process answered
        # The worker's transition index, which the child's copy follows (``follow``), and the
        # changes not handed to the child yet.
        self._index: Optional[TransitionIndex] = None
        self._index_changes: list[tuple[str, Optional[bytes]]] = []
        self.packed_batches = 0  # batches packed (and scored) in the scoring process

    def follow(self, index: TransitionIndex) -> None:
        """Keep a copy of ``index`` in the scoring process, so that it packs large batches
        (``submit_profiles``) itself.

        Packing a batch's query (the users' recent items weighted for the fold-in, their
        latest day's items' successor arrays) was a tenth of a busy worker's event loop, and
        it only reads the profiles and this index: the profiles go to the child as the JSON
        the batch stores anyway, and the index as its changes, in the order the worker's copy
        took them (a new child starts from all of it). The child's copy is therefore the
        worker's as of the batch, and so are the lists.
        """
        self._index = index
        index.listener = self._index_changed

    def _index_changed(self, key: str, raw: Optional[bytes]) -> None:
        if self._child is None or self._child.gone is not None:
            return  # the next child starts from the whole index
        if not self._index_changes:
            asyncio.get_running_loop().call_soon(self._hand_index_changes)
        self._index_changes.append((key, raw))

    def _hand_index_changes(self) -> None:
        changes, self._index_changes = self._index_changes, []
        child = self._child
        if changes and child is not None and child.gone is None:
            try:
                child.tell_index(changes, reset=False)
            except (ConnectionError, RuntimeError) as exc:
                # Its answers stop too, and the batches waiting for them get a new child.
                log.warning("writing to the scoring process failed: %r", exc)

    @property
    def pid(self) -> Optional[int]:
        """The scoring process's pid (for /api/health and the bench's memory figure)."""
        child = self._child
        return child.proc.pid if child is not None and child.proc.returncode is None else None

    def start(self) -> None:
        """Start the child now (its imports take about a second) rather than on the first batch."""
        if self._child is None and self._starting is None:
            self._starting = asyncio.ensure_future(self._spawn())
            self._starting.add_done_callback(self._spawned)

    @staticmethod
    def _spawned(task: "asyncio.Future[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            # A batch waiting for this child gets the error too; this is the record of it.
            log.error("could not start the scoring process: %r", task.exception())

    async def _spawn(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.child_module, *(["--nice", str(self.nice)] if self.nice else []),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            for pipe in (proc.stdin, proc.stdout):
                transport = getattr(pipe, "transport", None) or getattr(pipe, "_transport", None)
                _widen_pipe(transport.get_extra_info("pipe") if transport is not None else None)
            child = _Child(proc)
            if self._index is not None:
                # Nothing runs between this and the child's first batch: the copy it starts
                # from is the index as the batches after it see it.
                child.tell_index(self._index.entries_raw(), reset=True)
            self._index_changes = []
            self._child = child
            log.info("scoring process started (pid %d)", proc.pid)
        finally:
            self._starting = None

    async def _ensure(self) -> _Child:
        self.start()
        if self._starting is not None:
            await asyncio.shield(self._starting)
        assert self._child is not None
        return self._child

    def submit(self, model: ScoringModel, query: BatchQuery,
               generated_at: float) -> "asyncio.Future[ScoredValues]":
        if query.users <= self.inline_max_users:
            self.inline_batches += 1
            return self._inline.submit(model, query, generated_at)
        send = partial(_Child.send, model=model, query=query, generated_at=generated_at)
        return asyncio.ensure_future(self._answer(send, partial(score_values, model, query, generated_at),
                                                  self._send_now(send)))

    async def score(self, model: ScoringModel, query: BatchQuery, generated_at: float) -> ScoredValues:
        return await self.submit(model, query, generated_at)

    def submit_profiles(self, model: ScoringModel, profiles: list[bytes], spec: PackSpec, generated_at: float,
                        local: LocalPack) -> "asyncio.Future[tuple[list[int], Optional[ScoredValues]]]":
        """A batch sent again to a new child is packed against the index as it is then (the
        copy the new child starts from), not as it was when the batch was folded: a newer
        count, never a lost or doubled one."""
        if self._index is None or len(profiles) <= self.inline_max_users:
            return _pack_here(self, model, local, generated_at)
        self.packed_batches += 1

        def send(child: _Child, with_model: bool = False) -> "asyncio.Future[tuple]":
            self._hand_index_changes()  # the index changes so far go before the batch
            return child.send_pack(model, profiles, spec, generated_at, with_model)

        def in_worker() -> tuple[list[int], Optional[ScoredValues]]:
            rows, query = local()
            return rows, score_values(model, query, generated_at) if rows else None

        return asyncio.ensure_future(self._answer(send, in_worker, self._send_now(send)))

    def _send_now(self, send: "_Send") -> Optional[tuple[_Child, "asyncio.Future[tuple]"]]:
        """With the child up, the request leaves now, before the loop turns to other work."""
        child = self._child
        if child is None or child.gone is not None:
            return None
        return child, send(child)

    async def _answer(self, send: "_Send", in_worker: Callable[[], Any],
                      first: Optional[tuple[_Child, "asyncio.Future[tuple]"]]) -> Any:
        """The child's answer to ``send``: the model sent along if it lacks it, the request sent
        to a new child if it died, and ``in_worker()`` if that one failed too."""
        for attempt in (1, 2):
            try:
                if first is None:
                    child = await self._ensure()
                    first = (child, send(child))
                child, sent = first
                answer = await sent
                if answer[0] == "missing":  # the child does not hold the model (any more)
                    answer = await send(child, with_model=True)
            except (ChildGone, OSError) as exc:  # OSError: a child could not be started
                first = None
                if isinstance(exc, ChildGone):
                    await self._discard(exc.child)
                if attempt == 2:
                    # Twice in a row: keep the worker going with the maths on its own loop
                    # (slower, not wrong); the next batch tries a scoring process again.
                    self.fallbacks += 1
                    log.error("the scoring process failed twice (%s); scoring this batch in the worker", exc)
                    return in_worker()
                log.error("%s; starting another and scoring the batch again", exc)
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

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close the child's stdin: it finishes the batch at hand and exits (killed if it does not)."""
        if self._starting is not None:
            self._starting.cancel()
            self._starting = None
        child, self._child = self._child, None
        if child is None:
            return
        stdin = child.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(child.proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("the scoring process (pid %d) did not exit in %.0f s; killing it", child.proc.pid, timeout_s)
            await child.kill()
        await asyncio.gather(child.reader, return_exceptions=True)

    def status(self) -> dict:
        return {"mode": self.mode, "pid": self.pid, "restarts": self.restarts, "fallbacks": self.fallbacks,
                "inline_batches": self.inline_batches, "packed_batches": self.packed_batches, "nice": self.nice}


def make_scorer(mode: str, *, nice: int = 0, transitions: Optional[TransitionIndex] = None) -> Scorer:
    """The scorer for ``RECSYS_SCORING`` (process, thread or inline); ``nice``: the scoring
    process's niceness above the worker's (``RECSYS_SCORING_NICE``); ``transitions``: the
    worker's transition index, which a scoring process follows to pack batches itself."""
    if mode == "process":
        scorer = ProcessScorer(nice=nice)
        if transitions is not None:
            scorer.follow(transitions)
        return scorer
    if mode == "thread":
        return ThreadScorer()
    if mode == "inline":
        return InlineScorer()
    raise ValueError(f"unknown scoring mode {mode!r}; expected one of {', '.join(SCORING_MODES)}")
