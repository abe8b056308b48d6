"""Versioned model artifacts: ``models/<version>/model.npz`` (no pickles) + ``manifest.json``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np


@dataclass
class ModelArtifact:
    version: str
    item_ids: list[str]
    item_factors: np.ndarray                 # items x factors, float32, C-contiguous
    user_ids: list[str] = field(default_factory=list)
    user_factors: Optional[np.ndarray] = None
    item_category: list[Optional[str]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def factors(self) -> int:
        return int(self.item_factors.shape[1])


def new_version(now: Optional[float] = None) -> str:
    return time.strftime("als-%Y%m%dT%H%M%SZ", time.gmtime(now or time.time()))


def save(artifact: ModelArtifact, models_dir: Path) -> Path:
    out = models_dir / artifact.version
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "item_ids": np.asarray(artifact.item_ids, dtype=np.str_),
        "item_factors": np.ascontiguousarray(artifact.item_factors, dtype=np.float32),
        "item_category": np.asarray([c or "" for c in artifact.item_category], dtype=np.str_),
    }
    if artifact.user_factors is not None:
        arrays["user_ids"] = np.asarray(artifact.user_ids, dtype=np.str_)
        arrays["user_factors"] = np.ascontiguousarray(artifact.user_factors, dtype=np.float32)
    tmp = out / "model.tmp.npz"
    np.savez(tmp, **arrays)  # float factors barely compress; compressing cost more than the fit
    tmp.replace(out / "model.npz")
    manifest = {"version": artifact.version, "params": artifact.params, **artifact.manifest,
                "n_items": len(artifact.item_ids), "n_users": len(artifact.user_ids), "factors": artifact.factors}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def load(path: Path) -> ModelArtifact:
    """Load ``path`` (a version directory) without ever unpickling."""
    manifest = json.loads((path / "manifest.json").read_text())
    with np.load(path / "model.npz", allow_pickle=False) as npz:
        users = npz["user_ids"].tolist() if "user_ids" in npz.files else []
        return ModelArtifact(
            version=manifest["version"],
            item_ids=npz["item_ids"].tolist(),
            item_factors=np.ascontiguousarray(npz["item_factors"], dtype=np.float32),
            user_ids=users,
            user_factors=npz["user_factors"] if "user_factors" in npz.files else None,
            item_category=[c or None for c in npz["item_category"].tolist()],
            params=manifest.get("params", {}),
            manifest=manifest,
        )


def latest(models_dir: Path) -> Optional[Path]:
    versions = sorted(p for p in models_dir.glob("*/manifest.json"))
    return versions[-1].parent if versions else None
