"""What a worker accepts from ``amazon-model-updates``: each record checked before it is folded.

Anyone who can write to that topic chooses the model every worker serves, so a record is only
folded into the registry when it is well formed, within the configured sizes and, when workers
hold the trainer's public key (``RECSYS_MODEL_VERIFY_KEY``), signed with the matching private key
(``RECSYS_MODEL_SIGNING_KEY``: Ed25519, from ``cryptography``; ``recsys-faust keys models`` makes
a pair). A refused record is skipped with its reason; it never raises in the follower, which a
compacted topic read from the start would otherwise replay into every restart.

The signature covers the whole record but its ``signature`` field, in canonical JSON (sorted
keys, no spaces): the manifest, the times and the artifact (inline bytes, or the files' sha256
and sizes when announced by reference). The activation pin (``__active__``) is signed the same
way. Times are clamped to the record's timestamp plus ``clock_skew_s`` (0 by default): the
topic stamps records with their append time (``message.timestamp.type=LogAppendTime`` in
topics.yaml), so a record cannot win the registry's ordering by claiming a later time than the
one it was written at, and a publication written after it always wins.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Optional

ACTIVE_KEY = "__active__"
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class AnnouncementLimits:
    """The largest model a worker accepts, checked before anything is allocated."""

    max_items: int = 5_000_000
    max_factors: int = 1_024
    max_bytes: int = 64 * 1024 * 1024   # the announcement's artifact as shipped
    clock_skew_s: float = 0.0


def signed_bytes(value: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the record without its signature, in canonical JSON."""
    body = {k: v for k, v in value.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


class ModelSigner:
    """Signs announcements and pins (the trainer's side: ``train --publish``, ``models activate``)."""

    def __init__(self, private_key_b64: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.from_private_bytes(_key_bytes(private_key_b64, "RECSYS_MODEL_SIGNING_KEY"))

    def sign(self, value: dict[str, Any]) -> dict[str, Any]:
        return {**value, "signature": base64.b64encode(self._key.sign(signed_bytes(value))).decode("ascii")}


class ModelVerifier:
    """Checks announcements' signatures (the workers' side)."""

    def __init__(self, public_key_b64: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self._key = Ed25519PublicKey.from_public_bytes(_key_bytes(public_key_b64, "RECSYS_MODEL_VERIFY_KEY"))

    def verify(self, value: dict[str, Any]) -> bool:
        from cryptography.exceptions import InvalidSignature

        signature = value.get("signature")
        if not isinstance(signature, str):
            return False
        try:
            self._key.verify(base64.b64decode(signature, validate=True), signed_bytes(value))
        except (InvalidSignature, binascii.Error, ValueError, TypeError):
            return False
        return True


def signed(settings: Any, value: dict[str, Any]) -> dict[str, Any]:
    """``value`` signed with RECSYS_MODEL_SIGNING_KEY when it is set (workers holding the public
    key refuse what is not)."""
    key = settings.secret("model_signing_key")
    return ModelSigner(key).sign(value) if key else value


def generate_pair() -> tuple[str, str]:
    """A new (private, public) key pair, each base64 of its 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(private).decode("ascii"), base64.b64encode(public).decode("ascii")


def _key_bytes(text: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{name} is not a base64 Ed25519 key (make a pair with `recsys-faust keys models`)")
    return raw


def _time(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def check(key: str, value: Any, timestamp_s: Optional[float], limits: AnnouncementLimits,
          verifier: Optional[ModelVerifier]) -> tuple[Any, Optional[str]]:
    """``(value to fold, None)`` for an acceptable record (times clamped), ``(None, reason)``
    for one to skip. A tombstone (``value`` None) of a version key is acceptable unsigned: it
    only removes, and compaction needs it."""
    if key == ACTIVE_KEY:
        return _check_pin(value, timestamp_s, limits, verifier)
    if not VERSION.fullmatch(key or ""):
        return None, "bad_key"
    if value is None:
        return None, None
    if not isinstance(value, dict):
        return None, "not_an_object"
    if value.get("model_version") != key:
        return None, "key_is_not_the_version"
    reason = _shape_problem(value, limits)
    if reason is not None:
        return None, reason
    if verifier is not None and not verifier.verify(value):
        return None, "bad_signature" if "signature" in value else "unsigned"
    published = _time(value.get("published_at", value.get("created_at", 0.0)))
    if published is None or _time(value.get("created_at", 0.0)) is None:
        return None, "bad_time"
    if timestamp_s is not None and published > timestamp_s + limits.clock_skew_s:
        value = {**value, "published_at": timestamp_s + limits.clock_skew_s}
    return value, None


def _shape_problem(value: dict[str, Any], limits: AnnouncementLimits) -> Optional[str]:
    manifest = value.get("manifest")
    if not isinstance(manifest, dict):
        return "no_manifest"
    items, factors = manifest.get("n_items"), manifest.get("factors")
    if not isinstance(items, int) or isinstance(items, bool) or not 0 < items <= limits.max_items:
        return "too_many_items" if isinstance(items, int) and items > limits.max_items else "bad_item_count"
    if not isinstance(factors, int) or isinstance(factors, bool) or not 0 < factors <= limits.max_factors:
        return "too_many_factors" if isinstance(factors, int) and factors > limits.max_factors else "bad_factors"
    inline, ref = value.get("artifact_npz_b64"), value.get("artifact_ref")
    if isinstance(inline, str):
        return "too_large" if len(inline) * 3 // 4 > limits.max_bytes else None
    if isinstance(ref, dict):
        return None
    return "no_artifact"


def _check_pin(value: Any, timestamp_s: Optional[float], limits: AnnouncementLimits,
               verifier: Optional[ModelVerifier]) -> tuple[Any, Optional[str]]:
    if value is None:
        return None, None
    if not isinstance(value, dict) or not VERSION.fullmatch(str(value.get("model_version") or "")):
        return None, "bad_pin"
    activated = _time(value.get("activated_at", 0.0))
    if activated is None:
        return None, "bad_time"
    if verifier is not None and not verifier.verify(value):
        return None, "bad_signature" if "signature" in value else "unsigned"
    if timestamp_s is not None and activated > timestamp_s + limits.clock_skew_s:
        value = {**value, "activated_at": timestamp_s + limits.clock_skew_s}
    return value, None
