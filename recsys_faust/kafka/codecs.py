"""One key serialization everywhere: the raw UTF-8 bytes of the user_id.

Faust serializes table keys as JSON by default (``b'"u10"'``) while the contract's topic keys
are raw (``b'u10'``); the router then hashes different bytes than the producer did and sends
requests to the wrong worker. Registering this codec and using it for topics, tables and
routing makes all three hash the same bytes.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs
from mode.utils.compat import want_bytes

CODEC_NAME = "str"


class StrCodec(codecs.Codec):
    """str <-> UTF-8 bytes, nothing else (no quotes, no JSON)."""

    def _dumps(self, s: Any) -> bytes:
        return want_bytes(s)

    def _loads(self, s: bytes) -> str:
        return s.decode("utf-8") if isinstance(s, (bytes, bytearray)) else str(s)


def register() -> None:
    codecs.register(CODEC_NAME, StrCodec())
