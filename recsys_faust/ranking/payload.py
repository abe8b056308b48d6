"""A model on amazon-model-updates: the manifest plus the artifact itself, so workers on other
machines need no shared disk. The npz is loaded with ``allow_pickle=False``."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np

from .artifact import ModelArtifact, arrays, from_arrays


def encode(artifact: ModelArtifact, *, created_at: float | None = None) -> dict[str, Any]:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays(artifact, with_users=False))
    return {
        "model_version": artifact.version,
        "created_at": created_at or time.time(),
        "published_at": time.time(),  # what the registry orders publications by (ranking/registry.py)
        "manifest": {**artifact.manifest, "params": artifact.params, "factors": artifact.factors,
                     "n_items": len(artifact.item_ids)},
        "artifact_npz_b64": base64.b64encode(buf.getvalue()).decode("ascii"),
    }


def decode(message: dict[str, Any]) -> ModelArtifact:
    raw = base64.b64decode(message["artifact_npz_b64"])
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        manifest = message.get("manifest") or {}
        return from_arrays(npz, version=str(message["model_version"]), params=manifest.get("params", {}),
                           manifest=manifest)
