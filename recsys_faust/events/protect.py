"""Encrypted sensitive fields: review text and user-event properties (``RECSYS_ENCRYPTED_FIELDS``)
sealed with Fernet keys (``RECSYS_FIELD_KEYS``, newest first, ``cryptography``'s MultiFernet).

A sealed field is a string ``"enc:v1:<fernet token>"`` in place of its value (an object is
sealed as its JSON), so records stay valid JSON of the same shape and a sealed field passes
validation as what it stands for. Fields are sealed where plaintext would otherwise be kept:
by the client producers and the HTTP ingest before a record reaches Kafka, by the sink before
a row reaches PostgreSQL (for producers that sent plaintext), and in dead-letter copies.
Nothing the workers compute reads these fields, so they are opened only on the way out to an
operator (``recsys-faust db events``). ``keys rotate`` re-seals stored rows with the newest key
so that an old key can be dropped.

What this protects: the fields at rest in PostgreSQL (its files, dumps, backups, a reader of the
tables without the keys) and on the Kafka topics (the broker's disks, any consumer without the
keys) once producers seal at the source. What it does not: the other fields (ids, categories,
prices, timestamps), a process that holds the keys, and records produced in plaintext by a
client without the keys, which stay readable on the input topic until retention removes them.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

from ..settings.values import parse_fields

ENC_PREFIX = "enc:v1:"
DEFAULT_FIELDS = "review.text,user-event.properties"


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(ENC_PREFIX)


class FieldCipher:
    def __init__(self, keys: Sequence[str], fields: Mapping[str, frozenset[str]]) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        if not keys:
            raise ValueError("RECSYS_FIELD_KEYS holds no key")
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode("ascii")) for k in keys])
        except ValueError as exc:
            raise ValueError(f"RECSYS_FIELD_KEYS: not a Fernet key ({exc}); make one with `recsys-faust keys generate`")
        self.fields = dict(fields)

    @classmethod
    def from_settings(cls, settings: Any) -> Optional["FieldCipher"]:
        """The worker's cipher, or None when no keys are set (fields are then kept as sent)."""
        raw = settings.secret("field_keys")
        keys = [k for k in (raw or "").split(",") if k.strip()]
        return cls(keys, parse_fields(settings.security.encrypted_fields)) if keys else None

    # -- values ---------------------------------------------------------------------------------
    def seal_value(self, value: Any) -> str:
        data = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        prefix = ENC_PREFIX if isinstance(value, str) else ENC_PREFIX + "j:"
        return prefix + self._fernet.encrypt(data.encode("utf-8")).decode("ascii")

    def open_value(self, sealed: str) -> Any:
        """The value; raises ``cryptography.fernet.InvalidToken`` when no key opens it."""
        body = sealed[len(ENC_PREFIX):]
        is_json = body.startswith("j:")
        plain = self._fernet.decrypt((body[2:] if is_json else body).encode("ascii")).decode("utf-8")
        return json.loads(plain) if is_json else plain

    def reseal_value(self, sealed: str) -> str:
        body = sealed[len(ENC_PREFIX):]
        prefix = ENC_PREFIX + ("j:" if body.startswith("j:") else "")
        token = body[2:] if body.startswith("j:") else body
        return prefix + self._fernet.rotate(token.encode("ascii")).decode("ascii")

    # -- records --------------------------------------------------------------------------------
    def seal(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` with its sensitive fields sealed (those already sealed are kept)."""
        names = self.fields.get(kind)
        if not names or not any(obj.get(n) is not None and not is_sealed(obj[n]) for n in names):
            return obj
        return {k: (self.seal_value(v) if k in names and v is not None and not is_sealed(v) else v)
                for k, v in obj.items()}

    def open(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` with its sealed fields opened."""
        return {k: (self.open_value(v) if is_sealed(v) else v) for k, v in obj.items()}

    def reseal(self, kind: str, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """``obj`` with every sealed field sealed again with the newest key, and plaintext
        sensitive fields sealed; and whether anything changed (``keys rotate``)."""
        out = {k: (self.reseal_value(v) if is_sealed(v) else v) for k, v in obj.items()}
        out = self.seal(kind, out)
        return out, out != obj

    def seal_raw(self, kind: Optional[str], raw: Optional[bytes]) -> tuple[Optional[bytes], str]:
        """A refused record's bytes for its dead-letter copy: its sensitive fields sealed when it
        is a JSON object, the whole of it sealed when it cannot be read (it might hold anything);
        and how (``fields`` / ``whole`` / ``none``)."""
        if raw is None:
            return None, "none"
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and kind is not None:
            sealed = self.seal(kind, obj)
            return json.dumps(sealed, separators=(",", ":")).encode("utf-8"), "fields"
        return (ENC_PREFIX + self._fernet.encrypt(raw).decode("ascii")).encode("ascii"), "whole"


def generate_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")
