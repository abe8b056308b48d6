"""Send many events to the topics: validated, keyed, rate-limited, with a progress bar."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Iterable, Optional

from ..settings import Settings
from .producers import ProductEventProducer, prepare

KindEvent = tuple[str, dict]
CHUNK = 1_000


async def replay_events(
    settings: Settings,
    events: Iterable[KindEvent],
    *,
    rate: Optional[float] = None,
    on_progress: Optional[Callable[[int], None]] = None,
) -> int:
    """Produce ``events`` in order; ``rate`` caps events per second. Returns the count sent."""
    producer = ProductEventProducer(settings, linger_ms=10)
    await producer.start()
    sent = 0
    started = time.monotonic()
    chunk = max(1, min(CHUNK, int(rate // 10) if rate else CHUNK))
    try:
        futs = []
        for kind, obj in events:
            topic, key, value = prepare(kind, obj, max_bytes=settings.ingest.max_event_bytes)
            futs.append(await producer.send_prepared(topic, key, value))
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(futs) >= chunk:
                await asyncio.gather(*futs)
                if on_progress:
                    on_progress(len(futs))
                futs = []
        if futs:
            await asyncio.gather(*futs)
            if on_progress:
                on_progress(len(futs))
    finally:
        await producer.stop()
    return sent
