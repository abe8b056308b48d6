"""The scoring process: ``score_values`` for the worker that started it (ranking/runtime/scorer.py).

Reads length-prefixed pickled frames from stdin:

- ``("score", version, ScoringModel or None, query, generated_at)``: a packed batch, answered
  ``("ok", ScoredValues)``;
- ``("pack", version, ScoringModel or None, (profiles' JSON, PackSpec), generated_at)``: a batch
  packed here against this process's copy of the worker's transition index, answered
  ``("ok", (rows, ScoredValues or None))``;
- ``("index", [(key, entry JSON or None), ...], reset)``: changes of the worker's transition index
  in the order it took them (``reset``: the whole index, replacing the copy); not answered.

A request for a model version this process does not hold is answered ``("missing", version)``
(send the model along), a failed one ``("error", text)``; answers go to stdout in request order.
Exits when stdin closes (the worker stopped, or died), and on a change of the index it could not
take (its copy would differ from the worker's: the worker starts another from the whole index).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional

import orjson

from ..model.active import ScoringModel
from .pack import PackSpec, pack_profiles
from .ready_values import ScoredValues, score_values
from .scorer import FRAME_HEADER
from ...transitions.index import TransitionIndex

#: Model versions kept: the active one and the one it replaced (a batch packed against the old
#: model may still be on its way when the new one arrives).
MODELS_KEPT = 2


def _read_frame(stream: BinaryIO) -> Optional[bytes]:
    head = stream.read(FRAME_HEADER.size)
    if len(head) < FRAME_HEADER.size:
        return None
    (size,) = FRAME_HEADER.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


@dataclass(frozen=True)
class _Catalogue:
    """What the transition index's arrays need of a model here: its version and item index."""

    version: str
    index: dict[str, int]


def _pack_and_score(model: ScoringModel, catalogue: _Catalogue, transitions: TransitionIndex,
                    profiles: list[bytes], spec: PackSpec, generated_at: float
                    ) -> tuple[list[int], Optional[ScoredValues]]:
    shipped = model.transitions
    rows, query = pack_profiles(
        [orjson.loads(raw) for raw in profiles], spec, index=catalogue.index,
        shipped_indptr=shipped.indptr if shipped is not None else None,
        item_arrays=lambda pid: transitions.item_arrays(pid, catalogue))
    return rows, score_values(model, query, generated_at) if rows else None


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    models: dict[str, ScoringModel] = {}
    catalogues: dict[str, _Catalogue] = {}  # built on a version's first "pack"
    transitions = TransitionIndex()
    while (frame := _read_frame(requests)) is not None:
        message = pickle.loads(frame)
        if message[0] == "index":
            _, changes, reset = message
            if reset:
                transitions = TransitionIndex()
            for key, raw in changes:
                transitions.put_raw(key, raw)  # raises out of serve (and the process) if it cannot
            continue
        answer: Any
        try:
            kind, version, attached, body, generated_at = message
            if attached is not None:
                models.pop(version, None)
                models[version] = attached
                while len(models) > MODELS_KEPT:
                    catalogues.pop(next(iter(models)), None)
                    del models[next(iter(models))]
            model = models.get(version)
            if model is None:
                answer = ("missing", version)
            elif kind == "pack":
                catalogue = catalogues.get(version)
                if catalogue is None:
                    catalogue = catalogues[version] = _Catalogue(
                        version, {pid: i for i, pid in enumerate(model.catalogue.item_ids.tolist())})
                answer = ("ok", _pack_and_score(model, catalogue, transitions, *body, generated_at))
            else:
                answer = ("ok", score_values(model, body, generated_at))
        except Exception:  # noqa: BLE001 - the worker raises it with the batch
            answer = ("error", traceback.format_exc(limit=8))
        payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        answers.write(FRAME_HEADER.pack(len(payload)) + payload)
        answers.flush()


def main(argv: Optional[list[str]] = None) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the worker stops its child itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--nice"] and len(args) > 1:
        # Below the worker in the CPU scheduler's order. The worker's event loop folds the
        # events, writes the tables and answers HTTP; this process's maths is overlapped by
        # the pipeline, so it loses nothing when it yields the core to the loop. On a busy
        # two-core machine (the dev broker, the worker and this process) the loop otherwise
        # waited for a core 5% of its time; at niceness 10, 3%: 4-10% more events/s in two
        # alternated pairs of the full Amazon stream. With a core to spare it changes nothing.
        os.nice(int(args[1]))
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one core for the maths; the other runs the worker's event loop
    # Answers get the pipe to themselves: anything a library prints goes to stderr (the
    # worker's log) instead of into the frames.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
