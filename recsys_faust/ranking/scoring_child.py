"""The scoring process: ``score_values`` for the worker that started it (ranking/scorer.py).

Reads length-prefixed pickled ``(version, ScoringModel or None, query, generated_at)`` requests
from stdin and writes ``("ok", ScoredValues)``, ``("missing", version)`` (send the model along) or
``("error", text)`` answers to stdout in the same order. Exits when stdin closes: the worker
stopped, or died.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from typing import BinaryIO, Optional

from .ready_values import score_values
from .scorer import FRAME_HEADER
from .active import ScoringModel

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


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    models: dict[str, ScoringModel] = {}
    while (frame := _read_frame(requests)) is not None:
        try:
            version, attached, query, generated_at = pickle.loads(frame)
            if attached is not None:
                models.pop(version, None)
                models[version] = attached
                while len(models) > MODELS_KEPT:
                    del models[next(iter(models))]
            model = models.get(version)
            answer = ("ok", score_values(model, query, generated_at)) if model is not None else ("missing", version)
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
