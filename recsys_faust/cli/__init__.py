"""``recsys-faust``: the operator's commands, one module per group. Every one has ``--help``."""

from . import keys, models, shop, stack, store, tooling, training
from .base import main

#: The command modules are imported for their decorators: each registers its commands on ``main``.
__all__ = ["keys", "main", "models", "stack", "store", "tooling", "training"]
