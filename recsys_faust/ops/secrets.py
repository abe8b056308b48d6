"""Fresh values for every secret the deployment needs (``recsys-faust keys secrets``, and the
production rehearsal, which must run with real secrets: ``RECSYS_PRODUCTION`` refuses the rest)."""

from __future__ import annotations

import secrets

#: The secrets .env.example leaves empty, besides the model signing pair.
TOKEN_NAMES = ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "RECSYS_API_TOKEN", "RECSYS_READ_TOKENS",
               "RECSYS_INGEST_TOKENS", "RECSYS_METRICS_TOKEN", "RECSYS_DB_WORKER_PASSWORD",
               "RECSYS_DB_READER_PASSWORD", "RECSYS_FORWARD_SECRET")


def fresh_secrets() -> dict[str, str]:
    """Name -> a new value: 32 random bytes per token or password, and a new Ed25519 pair."""
    from ..ranking.model.announcement import generate_pair

    out = {name: secrets.token_urlsafe(32) for name in TOKEN_NAMES}
    private, public = generate_pair()
    out["RECSYS_MODEL_SIGNING_KEY"] = private
    out["RECSYS_MODEL_VERIFY_KEY"] = public
    return out
