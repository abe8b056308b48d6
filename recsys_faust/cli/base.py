"""The ``recsys-faust`` group and what its commands share (settings, errors without passwords)."""

from __future__ import annotations

import logging
from typing import Any

import click

from ..version import __version__
from ..settings import Settings, SettingsError


def _settings(**overrides: object) -> Settings:
    try:
        base = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc))
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.with_overrides(**changes) if changes else base


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recsys-faust")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """recsys-faust: Kafka-native, real-time product recommendations.

    Workers run with `faust -A recsys_faust worker -l info`; these commands set up, feed and
    inspect a deployment. Configuration comes from the environment and a .env file
    (KAFKA_BROKER, DATABASE_URL, WEB_PORT, RECSYS_*).
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")




def _without_password(dsn: str) -> str:
    """A DSN fit for an error message."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def _database_and_keys() -> tuple[Settings, Any]:
    """The settings of a command that needs the database, and the field cipher (None without keys)."""
    from ..events.protect import FieldCipher

    settings = _settings()
    if not settings.sink.database_url:
        raise click.UsageError("DATABASE_URL is not set")
    try:
        return settings, FieldCipher.from_settings(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc))
