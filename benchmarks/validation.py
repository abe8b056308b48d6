"""Per-event validation cost: the hand-written validator against pydantic v2 (and msgspec where
it is installed) enforcing the same rules on the same records.

The issue asked whether a library should do the validation. A library wins only if it keeps
the per-event cost and says as much about a bad record; this measures the first on real
records, and checks that all three accept the good records and refuse the same bad ones. Each
also yields the record as a dict, as ours does: the sink stores the whole payload.
"""

# No "from __future__ import annotations": the models below are built from their annotations.

import time
from typing import Any, Callable, Optional

import click
import orjson

from recsys_faust.events.model import KIND_TOPICS, Invalid
from recsys_faust.events.validate import MAX_ID_LEN, validate_event

_REPEATS = 3


def _pydantic_validator(now: float, skew: float) -> Callable[[bytes], bool]:
    from typing import Annotated

    from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

    Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]

    class Purchase(BaseModel):
        model_config = ConfigDict(strict=True, extra="allow")
        event_id: Id
        user_id: Id
        product_id: Id
        timestamp: float = Field(ge=0, allow_inf_nan=False)
        category: Optional[Annotated[str, Field(max_length=MAX_ID_LEN)]] = None
        quantity: Optional[int] = Field(None, ge=1, le=1_000_000)
        price: Optional[float] = Field(None, ge=0, le=1e12, allow_inf_nan=False)

        @model_validator(mode="after")
        def not_in_the_future(self) -> "Purchase":
            if self.timestamp > now + skew:
                raise ValueError("timestamp is in the future")
            return self

    adapter = TypeAdapter(Purchase)

    def check(raw: bytes) -> bool:
        try:
            adapter.validate_json(raw).model_dump()  # the payload dict, extras kept: the sink stores it
            return True
        except ValidationError:
            return False

    return check


def _msgspec_validator(now: float, skew: float) -> Optional[Callable[[bytes], bool]]:
    try:
        import msgspec
    except ImportError:
        return None
    from typing import Annotated

    Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]

    class Purchase(msgspec.Struct, forbid_unknown_fields=False):
        event_id: Id
        user_id: Id
        product_id: Id
        timestamp: Annotated[float, msgspec.Meta(ge=0)]
        category: Optional[Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)]] = None
        quantity: Optional[Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]] = None
        price: Optional[Annotated[float, msgspec.Meta(ge=0, le=1e12)]] = None

    def check(raw: bytes) -> bool:
        try:
            obj = orjson.loads(raw)   # the payload dict, extras kept: the sink stores it
            ev = msgspec.convert(obj, Purchase)
        except (ValueError, msgspec.ValidationError):
            return False
        return ev.timestamp <= now + skew

    return check


def _bad_records(now: float) -> list[bytes]:
    base = {"event_id": "e", "user_id": "u", "product_id": "p", "timestamp": now - 10}
    bad: list[Any] = [
        {**base, "user_id": 7}, {**base, "product_id": ""}, {k: v for k, v in base.items() if k != "event_id"},
        {**base, "timestamp": now + 10**6}, {**base, "quantity": 0}, {**base, "quantity": 2.5},
        {**base, "price": -1}, {**base, "user_id": "u" * 300}, {**base, "timestamp": True},
    ]
    return [orjson.dumps(b) for b in bad] + [b"not json", b"[1]", b'{"price": NaN}']


def bench_validation(report: Any, events: list[tuple[str, dict]]) -> None:
    """Time each validator over the purchase records, best of ``_REPEATS`` passes."""
    now, skew = time.time(), 3600.0
    raws = [orjson.dumps(obj) for kind, obj in events if kind == "purchase"]
    if not raws:
        click.echo("validation: no purchase records to time")
        return
    topic = KIND_TOPICS["purchase"]
    ours = lambda raw: not isinstance(validate_event(topic, raw, now=now, max_future_skew_s=skew), Invalid)
    candidates: list[tuple[str, Optional[Callable[[bytes], bool]]]] = [
        ("hand-written", ours), ("pydantic v2", _pydantic_validator(now, skew)),
        ("msgspec", _msgspec_validator(now, skew)),
    ]
    bad = _bad_records(now)
    click.echo(f"validation: {len(raws):,} purchase records, best of {_REPEATS}")
    timings: dict[str, float] = {}
    for name, check in candidates:
        if check is None:
            click.echo(f"  {name}: not installed (pip install {name}) - not measured")
            continue
        accepted = sum(check(r) for r in raws)
        refused = sum(not check(r) for r in bad)
        if accepted != len(raws) or refused != len(bad):
            raise click.ClickException(f"validation: {name} accepted {accepted}/{len(raws)} good and refused "
                                       f"{refused}/{len(bad)} bad records: not the same rules")
        best = float("inf")
        for _ in range(_REPEATS):
            t0 = time.perf_counter()
            for r in raws:
                check(r)
            best = min(best, time.perf_counter() - t0)
        timings[name] = best / len(raws) * 1e6
        click.echo(f"  {name}: {timings[name]:.2f} us/event")
    mine = timings["hand-written"]
    for name, us in timings.items():
        if name != "hand-written":
            report.add(f"validation, {name}", f"{us:.2f} us/event", f"{mine:.2f} us hand-written",
                       f"{us / mine:.2f}x", "same rules; ratio > 1: the library costs more")
