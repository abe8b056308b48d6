"""Which model the cluster serves: what ``amazon-model-updates`` says, folded into one choice.

The topic is compacted and holds two kinds of records:

- key ``<model_version>``: the announcement of a version (manifest plus the artifact, inline or
  by reference to the shared models dir: ``ranking/model/payload.py``), with ``published_at``; a null
  value (a tombstone) prunes it;
- key ``__active__``: the activation pin ``{model_version, activated_at}`` that
  ``recsys-faust models activate`` writes (a rollback, or a roll-forward to a chosen version).

Every worker tails the topic from the beginning (``worker/replicas.py``) and serves what
``chosen()`` names: the latest action wins, so a publication after an activation serves the
new version, and an activation after the newest publication serves the pinned one. Because the
choice is made from the topic alone, every worker makes the same one, and a restarted worker
comes back on it. The history a start-up reads is bounded by pruning (``models prune --keep
N`` writes tombstones; compaction then drops the artifacts). In memory the registry keeps every
announcement's manifest, but the inline artifact (up to ``RECSYS_MAX_MODEL_BYTES`` each) only of
the version chosen and the newest: a switch back to another one reads its record from the topic
again (``worker/replicas.py``), checked like the first time.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from ... import metrics
from .announcement import ACTIVE_KEY, AnnouncementLimits, ModelVerifier, check
from .payload import shipped_bytes

log = logging.getLogger(__name__)

#: A record of the topic: (key, value) or (key, value, the broker's timestamp in seconds).
Record = Union[tuple[str, Optional[Any]], tuple[str, Optional[Any], Optional[float]]]


def published_at(message: dict[str, Any]) -> float:
    """When a version was announced (older announcements carry only their training time)."""
    return float(message.get("published_at") or message.get("created_at") or 0.0)


def is_announcement(value: Any) -> bool:
    return isinstance(value, dict) and "model_version" in value and ("artifact_npz_b64" in value
                                                                     or "artifact_ref" in value)


@dataclass
class ModelRegistry:
    """The announcements and the pin still on the topic; ``refused`` counts the records skipped
    by reason (ranking/model/announcement.py checks each one)."""

    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    pin: Optional[dict[str, Any]] = None
    limits: AnnouncementLimits = field(default_factory=AnnouncementLimits)
    verifier: Optional[ModelVerifier] = None
    refused: Counter = field(default_factory=Counter)
    #: inline artifacts kept besides the chosen and the newest version's (0: just those two)
    keep_inline: int = 0

    def apply(self, records: Iterable[Record]) -> None:
        """Fold records of the topic in offset order (the newest value of a key wins); a record
        that fails its check is skipped with its reason, never raised."""
        for record in records:
            key, value = record[0], record[1]
            timestamp = record[2] if len(record) > 2 else None  # type: ignore[misc]
            try:
                value, reason = check(key, value, timestamp, self.limits, self.verifier)
            except Exception as exc:  # noqa: BLE001 - a record must never stop the follower
                value, reason = None, f"malformed ({type(exc).__name__})"
            if reason is not None:
                self.refused[reason] += 1
                metrics.MODEL_RECORDS_REFUSED.labels(reason.split(" ")[0]).inc()
                log.warning("amazon-model-updates: skipping the record of key %r: %s", key[:140], reason)
                continue
            if key == ACTIVE_KEY:
                self.pin = value
            elif value is None:
                self.versions.pop(key, None)
            else:
                self.versions[key] = value
        self._drop_artifacts()

    def _drop_artifacts(self) -> None:
        """Inline artifacts of versions neither chosen nor newest are dropped (``stripped`` marks
        them; their size stays for ``summary``)."""
        keep = {str(v["model_version"]) for v in (self.chosen(), self.newest()) if v is not None}
        ordered = sorted(self.versions.values(), key=lambda v: (published_at(v), str(v["model_version"])), reverse=True)
        keep |= {str(v["model_version"]) for v in ordered[:self.keep_inline]}
        for version, value in self.versions.items():
            if version not in keep and "artifact_npz_b64" in value:
                self.versions[version] = {**{k: v for k, v in value.items() if k != "artifact_npz_b64"},
                                          "stripped": True, "shipped_bytes": shipped_bytes(value)}

    def newest(self) -> Optional[dict[str, Any]]:
        if not self.versions:
            return None
        return max(self.versions.values(), key=lambda v: (published_at(v), str(v["model_version"])))

    def chosen(self) -> Optional[dict[str, Any]]:
        """The announcement to serve: the newest publication, or the pinned version when it was
        activated after that publication (and is still on the topic)."""
        newest = self.newest()
        if newest is None or self.pin is None:
            return newest
        pinned = self.versions.get(str(self.pin["model_version"]))
        if pinned is not None and float(self.pin.get("activated_at") or 0.0) >= published_at(newest):
            return pinned
        return newest

    def summary(self) -> list[dict[str, Any]]:
        """Every version on the topic, newest first, with its offline figures and whether it is
        the one served (``models list``, ``GET /api/models``)."""
        chosen = self.chosen()
        pinned = str(self.pin["model_version"]) if self.pin else None
        out = []
        for v in sorted(self.versions.values(), key=lambda v: (published_at(v), str(v["model_version"])), reverse=True):
            manifest = v.get("manifest") or {}
            version = str(v["model_version"])
            out.append({
                "model_version": version,
                "created_at": v.get("created_at"),
                "published_at": published_at(v),
                "factors": manifest.get("factors"),
                "items": manifest.get("n_items"),
                "offline_metrics": manifest.get("offline_metrics") or {},
                "active": chosen is not None and version == str(chosen["model_version"]),
                "pinned": version == pinned,
                "bytes": v.get("shipped_bytes", shipped_bytes(v)),
                "shipped": "reference" if "artifact_ref" in v else "inline",
            })
        return out

    def to_prune(self, keep: int) -> list[str]:
        """The versions ``models prune --keep N`` removes: all but the newest ``keep``
        publications and the one served."""
        chosen = self.chosen()
        ordered = sorted(self.versions.values(), key=lambda v: (published_at(v), str(v["model_version"])), reverse=True)
        kept = {str(v["model_version"]) for v in ordered[:keep]}
        if chosen is not None:
            kept.add(str(chosen["model_version"]))
        return sorted(set(self.versions) - kept)


def registry_for(settings: Any) -> ModelRegistry:
    """An empty registry that checks records as ``settings`` say (the trainer's public key, the
    largest model accepted)."""
    t = settings.training
    return ModelRegistry(limits=AnnouncementLimits(t.model_max_items, t.model_max_factors, t.max_model_bytes,
                                                   t.model_clock_skew_s),
                         verifier=ModelVerifier(settings.security.model_verify_key)
                         if settings.security.model_verify_key else None)
