"""Top-k selection and the contract's answer shape, pure (the read path's last step)."""

from __future__ import annotations

import time
from typing import Any, Iterable, Optional

from ..ranking.items import Item, answered



def select(
    items: Iterable[Item],
    k: int,
    *,
    exclude: Iterable[str] = (),
    category: Optional[str] = None,
) -> list[Item]:
    """Filter a ranked list by exclusions and category, keep the first k."""
    skip = set(exclude)
    out = []
    for it in items:
        if it["product_id"] in skip:
            continue
        if category and it.get("category") != category:
            continue
        out.append(it)
        if len(out) >= k:
            break
    return out


def answer(
    user_id: str,
    items: list[Item],
    *,
    strategy: str,
    model_version: str,
    generated_at: Optional[float] = None,
) -> dict[str, Any]:
    """The contract's recommendation answer shape."""
    return {
        "user_id": user_id,
        "items": answered(items),
        "model_version": model_version,
        "strategy": strategy,
        "generated_at": time.time() if generated_at is None else generated_at,
    }
