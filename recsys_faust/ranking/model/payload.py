"""A model on amazon-model-updates: the manifest plus the artifact, inline or by reference.

Inline (``artifact_npz_b64``): the arrays themselves, so workers on other machines need no shared
disk. That is the default while the message fits ``RECSYS_MAX_MODEL_BYTES`` (64 MB: a catalogue
of about 200k items at 64 factors).

By reference (``artifact_ref``): past that size a Kafka message is the wrong carrier (brokers
cap messages, and every worker would hold the bytes twice while decoding). The announcement then
names the version directory under ``RECSYS_MODELS_DIR``, which trainer and workers share (a
volume), with each file's sha256 and size; a worker checks both before serving, maps the item
factors (``artifact.load(..., mmap=True)``) and shares them with its scoring process.

Either way nothing is unpickled: npz files are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import base64
import io
import re
import time
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .announcement import AnnouncementLimits
from .artifact import ModelArtifact, arrays, files_digest, from_arrays, load

_VERSION_DIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ModelLoadError(ValueError):
    """An announcement that cannot be served (its files missing, altered or malformed)."""


def _header(artifact: ModelArtifact, created_at: Optional[float]) -> dict[str, Any]:
    return {
        "model_version": artifact.version,
        "created_at": created_at or time.time(),
        "published_at": time.time(),  # what the registry orders publications by (ranking/model/registry.py)
        "manifest": {**artifact.manifest, "params": artifact.params, "factors": artifact.factors,
                     "n_items": len(artifact.item_ids)},
    }


def encode(artifact: ModelArtifact, *, created_at: float | None = None) -> dict[str, Any]:
    """The announcement with the artifact inline."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays(artifact, with_users=False))
    return {**_header(artifact, created_at), "artifact_npz_b64": base64.b64encode(buf.getvalue()).decode("ascii")}


def encode_reference(artifact: ModelArtifact, path: Path, *, created_at: float | None = None) -> dict[str, Any]:
    """The announcement naming ``path`` (``save``'s version directory under the shared models dir)."""
    if not _VERSION_DIR.fullmatch(path.name):
        raise ModelLoadError(f"{path.name!r} is not a version directory name")
    files = files_digest(path)
    return {**_header(artifact, created_at),
            "artifact_ref": {"dir": path.name, "files": files, "bytes": sum(f["bytes"] for f in files.values())}}


def shipped_bytes(message: dict[str, Any]) -> int:
    """The artifact's size as announced (inline: the base64 text; by reference: the files)."""
    if "artifact_ref" in message:
        return int((message.get("artifact_ref") or {}).get("bytes") or 0)
    return len(message.get("artifact_npz_b64") or "")


def decode(message: dict[str, Any], models_dir: Optional[Path] = None,
           limits: Optional[AnnouncementLimits] = None) -> ModelArtifact:
    """The artifact of an announcement; a reference is resolved under ``models_dir`` and checked.

    Within ``limits``: an inline artifact's arrays are not decompressed past ``max_bytes`` times
    eight (a zip bomb stops at its header), and the item factors must have the announced shape,
    within the item and factor caps, before a worker folds anyone in against them."""
    limits = limits or AnnouncementLimits()
    manifest = message.get("manifest") or {}
    version = str(message["model_version"])
    ref = message.get("artifact_ref")
    if ref is not None:
        return _checked(_resolve(ref, version, models_dir), manifest, limits)
    raw = base64.b64decode(message["artifact_npz_b64"])
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > 8 * limits.max_bytes:
        raise ModelLoadError(f"model {version}: its arrays unpack to {unpacked} bytes, over 8 x RECSYS_MAX_MODEL_BYTES")
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        artifact = from_arrays(npz, version=version, params=manifest.get("params", {}), manifest=manifest)
    return _checked(artifact, manifest, limits)


def _checked(artifact: ModelArtifact, manifest: dict[str, Any], limits: AnnouncementLimits) -> ModelArtifact:
    rows, factors = artifact.item_factors.shape if artifact.item_factors.ndim == 2 else (-1, -1)
    if (rows, factors) != (manifest.get("n_items"), manifest.get("factors")) or rows != len(artifact.item_ids) \
            or not (0 < rows <= limits.max_items and 0 < factors <= limits.max_factors):
        raise ModelLoadError(f"model {artifact.version}: item factors {artifact.item_factors.shape} for "
                             f"{len(artifact.item_ids)} items are not the announced {manifest.get('n_items')} x "
                             f"{manifest.get('factors')} within {limits.max_items} x {limits.max_factors}")
    return artifact


def _resolve(ref: Any, version: str, models_dir: Optional[Path]) -> ModelArtifact:
    if models_dir is None:
        raise ModelLoadError(f"model {version} is announced by reference and this process has no models dir")
    name = ref.get("dir") if isinstance(ref, dict) else None
    files = ref.get("files") if isinstance(ref, dict) else None
    if not isinstance(name, str) or not _VERSION_DIR.fullmatch(name) or not isinstance(files, dict) or not files:
        raise ModelLoadError(f"model {version}: malformed artifact_ref {ref!r}")
    path = Path(models_dir) / name
    if not path.is_dir():
        raise ModelLoadError(f"model {version} is announced by reference at {path}, which this worker cannot see: "
                             f"RECSYS_MODELS_DIR must be the volume the trainer writes to")
    found = files_digest(path)
    for fname, want in files.items():
        got = found.get(fname)
        if got is None or got["bytes"] != want.get("bytes") or got["sha256"] != want.get("sha256"):
            raise ModelLoadError(f"model {version}: {path / fname} is not the file announced "
                                 f"(want {want}, found {got}): a partial copy or another model")
    artifact = load(path, mmap=True)
    if artifact.version != version:
        raise ModelLoadError(f"model {version}: {path} holds version {artifact.version}")
    return artifact
