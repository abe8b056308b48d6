"""Connection options for plain aiokafka clients, from the one settings object."""

from __future__ import annotations

import ssl
from typing import Any, Optional

from ..settings import Settings


def ssl_context(settings: Settings) -> Optional[ssl.SSLContext]:
    if "SSL" not in settings.broker_security.kafka_security_protocol.upper():
        return None
    ctx = ssl.create_default_context(cafile=settings.broker_security.kafka_ssl_cafile)
    if settings.broker_security.kafka_ssl_certfile:
        ctx.load_cert_chain(settings.broker_security.kafka_ssl_certfile, settings.broker_security.kafka_ssl_keyfile)
    return ctx


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """bootstrap servers + TLS/SASL options shared by producers, admin and raw consumers."""
    kw: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "security_protocol": settings.broker_security.kafka_security_protocol.upper(),
        "request_timeout_ms": int(settings.kafka.broker_request_timeout * 1000),
    }
    ctx = ssl_context(settings)
    if ctx is not None:
        kw["ssl_context"] = ctx
    if settings.broker_security.kafka_sasl_mechanism:
        kw["sasl_mechanism"] = settings.broker_security.kafka_sasl_mechanism.upper()
        kw["sasl_plain_username"] = settings.broker_security.kafka_sasl_username
        kw["sasl_plain_password"] = settings.secret("kafka_sasl_password")
    return kw
