"""Versioned model artifacts: ``models/<version>/`` holds ``item_factors.npy``, ``model.npz``
(the other arrays; no pickles) and ``manifest.json``.

The item factors are a plain ``.npy`` so that ``load(..., mmap=True)`` maps them rather than
reading them: a worker and its scoring process then share one copy in the page cache (at a
million items and 64 factors, 256 MB that would otherwise be held twice), and a model announced
by reference (``payload.py``) loads in the time it takes to map a file. Artifacts written before
this layout (factors inside ``model.npz``) still load.

The same arrays travel on amazon-model-updates (``payload.py``): ``arrays`` and ``from_arrays``
are the one definition of the format.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp


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
    # items x items successor counts of the training data (transitions/counts.py), or None
    transitions: Optional[sp.csr_matrix] = None
    # the version directory it was loaded from (its mapped factors and saved index live there)
    path: Optional[Path] = None

    @property
    def factors(self) -> int:
        return int(self.item_factors.shape[1])


def new_version(now: Optional[float] = None) -> str:
    return time.strftime("als-%Y%m%dT%H%M%SZ", time.gmtime(now or time.time()))


def arrays(artifact: ModelArtifact, *, with_users: bool) -> dict[str, np.ndarray]:
    """The artifact as named arrays (strings as unicode arrays: loadable without pickles)."""
    out: dict[str, np.ndarray] = {
        "item_ids": np.asarray(artifact.item_ids, dtype=np.str_),
        "item_factors": np.ascontiguousarray(artifact.item_factors, dtype=np.float32),
        "item_category": np.asarray([c or "" for c in artifact.item_category], dtype=np.str_),
    }
    if artifact.transitions is not None:
        t = artifact.transitions.tocsr()
        out.update(transitions_indptr=t.indptr.astype(np.int64), transitions_indices=t.indices.astype(np.int32),
                   transitions_data=t.data.astype(np.float32))
    if with_users and artifact.user_factors is not None:
        out["user_ids"] = np.asarray(artifact.user_ids, dtype=np.str_)
        out["user_factors"] = np.ascontiguousarray(artifact.user_factors, dtype=np.float32)
    return out


def from_arrays(npz: Any, *, version: str, params: dict[str, Any], manifest: dict[str, Any]) -> ModelArtifact:
    """The artifact of ``arrays`` (an open npz or a dict)."""
    names = set(npz.files if hasattr(npz, "files") else npz)
    item_ids = npz["item_ids"].tolist()
    transitions = None
    if "transitions_indptr" in names:
        transitions = sp.csr_matrix((npz["transitions_data"], npz["transitions_indices"], npz["transitions_indptr"]),
                                    shape=(len(item_ids), len(item_ids)))
    return ModelArtifact(
        version=version,
        item_ids=item_ids,
        item_factors=np.ascontiguousarray(npz["item_factors"], dtype=np.float32),
        user_ids=npz["user_ids"].tolist() if "user_ids" in names else [],
        user_factors=npz["user_factors"] if "user_factors" in names else None,
        item_category=[c or None for c in npz["item_category"].tolist()],
        params=params,
        manifest=manifest,
        transitions=transitions,
    )


FACTORS_FILE = "item_factors.npy"
ARRAYS_FILE = "model.npz"
INDEX_FILE = "hnsw.faiss"  # ranking/maths/ann.py's saved HNSW index, for models past RECSYS_ANN_MIN_ITEMS


def save(artifact: ModelArtifact, models_dir: Path) -> Path:
    out = models_dir / artifact.version
    out.mkdir(parents=True, exist_ok=True)
    named = arrays(artifact, with_users=True)
    tmp = out / "item_factors.tmp.npy"
    np.save(tmp, named.pop("item_factors"))
    tmp.replace(out / FACTORS_FILE)
    tmp = out / "model.tmp.npz"
    np.savez(tmp, **named)  # float factors barely compress; compressing cost more than the fit
    tmp.replace(out / ARRAYS_FILE)
    manifest = {"version": artifact.version, "params": artifact.params, **artifact.manifest,
                "n_items": len(artifact.item_ids), "n_users": len(artifact.user_ids), "factors": artifact.factors}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def load(path: Path, *, mmap: bool = False) -> ModelArtifact:
    """Load ``path`` (a version directory) without ever unpickling; with ``mmap`` the item
    factors are mapped read-only instead of read (the file must then stay in place)."""
    manifest = json.loads((path / "manifest.json").read_text())
    with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
        named: dict[str, Any] = {name: npz[name] for name in npz.files}
    if (path / FACTORS_FILE).exists():
        named["item_factors"] = np.load(path / FACTORS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
    artifact = from_arrays(named, version=manifest["version"], params=manifest.get("params", {}), manifest=manifest)
    artifact.path = path
    return artifact


def files_digest(path: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of each file a worker loads from a version directory: what an
    announcement by reference carries, so a worker never serves a half-copied or altered model."""
    out = {}
    for name in (FACTORS_FILE, ARRAYS_FILE, INDEX_FILE):
        f = path / name
        if f.exists():
            out[name] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    return out


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 4 MiB chunks (models are hundreds of MB; backups check theirs too)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def save_index(path: Path, item_factors: np.ndarray, *, threads: int = 0) -> float:
    """Build the HNSW index of a large model (ranking/maths/ann.py) and write it into its version
    directory, so the scoring processes read it instead of each building it (minutes at a
    million items on one thread). Returns the build's seconds."""
    import os

    from ..maths.ann import AnnConfig, ItemIndex

    started = time.perf_counter()
    index = ItemIndex(item_factors, AnnConfig(build_threads=threads or os.cpu_count() or 1))
    tmp = path / (INDEX_FILE + ".tmp")
    index.write(str(tmp))
    tmp.replace(path / INDEX_FILE)
    return time.perf_counter() - started


def latest(models_dir: Path) -> Optional[Path]:
    versions = sorted(p for p in models_dir.glob("*/manifest.json"))
    return versions[-1].parent if versions else None
