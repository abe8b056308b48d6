"""Event-time window counters (tumbling and hopping) with explicit expiry, as plain data.

Faust's windowed tables count with ``table[k] += 1``, which double counts on the replays Faust
does after every rebalance, and they expire against wall-clock time, which drops replayed
history at once. Keeping the windows inside the user's profile value makes them part of one
idempotent, atomic update, and expiry runs on *stream time* (the newest event time seen for
the key), so replaying last year's data gives the same windows as live traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional


@dataclass(frozen=True)
class WindowSpec:
    """A window family: ``size == step`` is tumbling, ``step < size`` hopping.

    ``expires`` is how long a window is kept after it closes, measured in stream time.
    """

    size: int
    step: int
    expires: int

    def __post_init__(self) -> None:
        if self.size <= 0 or self.step <= 0 or self.size % self.step:
            raise ValueError(f"window size {self.size} must be a positive multiple of step {self.step}")

    @property
    def tumbling(self) -> bool:
        return self.size == self.step

    def starts_for(self, ts: float) -> Iterator[int]:
        """Start times of every window containing ``ts`` (one when tumbling)."""
        last = int(ts // self.step) * self.step
        first = last - self.size + self.step
        for start in range(first, last + 1, self.step):
            if start <= ts < start + self.size:
                yield start

    def is_expired(self, start: int, stream_time: float) -> bool:
        return start + self.size + self.expires <= stream_time

    def expiry_step(self, stream_time: float) -> int:
        """Starts (multiples of ``step``) up to this many steps are expired at ``stream_time``:
        the set of expired windows changes only when this number does."""
        return int((stream_time - self.size - self.expires) // self.step)


def add_to_windows(
    windows: dict[str, dict[str, int]],
    spec: WindowSpec,
    ts: float,
    kind: str,
    stream_time: float,
    previous_stream_time: Optional[float] = None,
) -> None:
    """Count one event of ``kind`` at ``ts`` into ``windows`` (start -> kind -> n), in place.

    Windows already expired at ``stream_time`` are dropped, and a late event whose windows are
    all expired is not counted in any (as a windowed table would after expiry).

    ``previous_stream_time`` is the stream time these windows were last expired at: when no
    window start crossed into expiry since (``expiry_step`` unchanged), the scan of every
    window (two a profile, 25 to 28 windows each: 10 us an event, the largest part of a profile
    update) is skipped; nothing it could remove is there.
    """
    # The windows containing ``ts`` start at the multiples of ``step`` from ``first`` to
    # ``last`` (``starts_for``); those starting at or before ``cutoff`` are expired
    # (``is_expired``). Computed as one range: the per-window generator and checks were half of
    # this function's time, and this runs twice per event.
    step = spec.step
    last = int(ts // step) * step
    first = last - spec.size + step
    cutoff = stream_time - spec.size - spec.expires
    for start in range(max(first, (int(cutoff // step) + 1) * step), last + 1, step):
        key = str(start)
        bucket = windows.get(key)
        if bucket is None:
            windows[key] = {kind: 1}
        else:
            bucket[kind] = bucket.get(kind, 0) + 1
    if previous_stream_time is None or spec.expiry_step(previous_stream_time) != spec.expiry_step(stream_time):
        expire_windows(windows, spec, stream_time)


def expire_windows(windows: dict[str, dict[str, int]], spec: WindowSpec, stream_time: float) -> None:
    for start in [s for s in windows if spec.is_expired(int(s), stream_time)]:
        del windows[start]


def window_view(windows: dict[str, dict[str, int]], spec: WindowSpec) -> list[dict]:
    """The windows as a sorted list of ``{start, end, counts}`` for APIs."""
    return [
        {"start": int(s), "end": int(s) + spec.size, "counts": dict(windows[s])}
        for s in sorted(windows, key=int)
    ]
