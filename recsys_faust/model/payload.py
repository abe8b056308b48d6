"""A model on amazon-model-updates: the manifest plus the artifact itself, so workers on other
machines need no shared disk. The npz is loaded with ``allow_pickle=False``."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np

from .artifact import ModelArtifact


def encode(artifact: ModelArtifact, *, created_at: float | None = None) -> dict[str, Any]:
    buf = io.BytesIO()
    arrays = {
        "item_ids": np.asarray(artifact.item_ids, dtype=np.str_),
        "item_factors": np.ascontiguousarray(artifact.item_factors, dtype=np.float32),
        "item_category": np.asarray([c or "" for c in artifact.item_category], dtype=np.str_),
    }
    np.savez_compressed(buf, **arrays)
    return {
        "model_version": artifact.version,
        "created_at": created_at or time.time(),
        "manifest": {**artifact.manifest, "params": artifact.params, "factors": artifact.factors,
                     "n_items": len(artifact.item_ids)},
        "artifact_npz_b64": base64.b64encode(buf.getvalue()).decode("ascii"),
    }


def decode(message: dict[str, Any]) -> ModelArtifact:
    raw = base64.b64decode(message["artifact_npz_b64"])
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        manifest = message.get("manifest") or {}
        return ModelArtifact(
            version=str(message["model_version"]),
            item_ids=npz["item_ids"].tolist(),
            item_factors=np.ascontiguousarray(npz["item_factors"], dtype=np.float32),
            item_category=[c or None for c in npz["item_category"].tolist()],
            params=manifest.get("params", {}),
            manifest=manifest,
        )
