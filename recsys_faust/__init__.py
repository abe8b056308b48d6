"""recsys-faust: Kafka-native, real-time product recommendations on Faust.

``faust -A recsys_faust worker`` finds ``app`` here; it is built on first access so that the
CLI and the pure core import without configuring a worker.
"""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from .settings import Settings
        from .worker import build_worker

        app = build_worker(Settings.from_env())
        globals()["app"] = app
        return app
    raise AttributeError(name)
