"""kafka/internals.py: every private Faust, mode and aiokafka attribute the project uses exists
on the installed versions (an upgrade that drops or renames one fails here, not in a worker),
and no module outside ``kafka/`` reaches one directly."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import recsys_faust
from recsys_faust.kafka.internals import INTERNALS

PACKAGE = Path(recsys_faust.__file__).resolve().parent


def _has(owner: type, attr: str) -> bool:
    if hasattr(owner, attr):
        return True
    return any(f"self.{attr}" in inspect.getsource(k) for k in owner.__mro__
               if k.__module__.split(".")[0] in ("faust", "mode", "aiokafka"))


def test_every_listed_internal_exists_on_the_installed_versions():
    missing = [f"{mod}.{cls}.{attr} ({why})" for mod, cls, attr, why in INTERNALS
               if not _has(getattr(importlib.import_module(mod), cls), attr)]
    assert missing == []


def test_no_module_outside_kafka_reaches_a_listed_internal():
    names = {attr for _, _, attr, _ in INTERNALS}
    pattern = re.compile(r"(?<!self)(?<!cls)\.(" + "|".join(sorted(names)) + r")\b|\"(" + "|".join(sorted(names)) + r")\"")
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "kafka":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if pattern.search(code) and "``" not in code:
                found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []
