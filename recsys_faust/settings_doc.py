"""docs/configuration.md, generated from the Settings class itself so that it cannot drift.

Each field's environment variable(s), default and explanation come from
``settings/sections.py``: the explanation is the field's comment (on its line, or the comment
lines just above it), the page's sections are the section models, titled by their docstrings. ``python -m recsys_faust.settings_doc`` prints the
page; ``tests/unit/test_settings_doc.py`` fails when the committed page differs.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from .settings import SECTIONS, env_names

SOURCE = Path(__file__).with_name("settings") / "sections.py"
HEADER = """# Configuration

Every setting is an environment variable (a `.env` file in the working directory is read too;
`RECSYS_ENV_FILE` names another, empty for none). Each field is `RECSYS_<NAME>`; the wiring ones
also answer to their documented names (`KAFKA_BROKER`, `DATABASE_URL`, `WEB_PORT`, ...).
Values are checked at start-up, and an error names the variable. Secrets are never printed.

This page is generated from `recsys_faust/settings/sections.py` (`python -m recsys_faust.settings_doc >
docs/configuration.md`); a test fails when it is out of date.
"""


def _comments() -> dict[str, tuple[str, str]]:
    """field name -> (section model name, explanation) from the comments of each section's body."""
    out: dict[str, tuple[str, str]] = {}
    section, pending = "", []
    lines = SOURCE.read_text(encoding="utf-8").splitlines()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    for number, line in enumerate(lines, start=1):
        header = re.match(r"class (\w+)\(Section\):", line)
        if header:
            section, pending = header.group(1), []
            continue
        if not section or not line.startswith("    ") or line.startswith("        "):
            pending = [] if not line.strip().startswith("#") else pending
            if not line.strip().startswith("#"):
                continue
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(comments.get(number, ""))
            continue
        field = re.match(r"([a-z_][a-z0-9_]*)\s*:", stripped)
        if field and "(" not in stripped.split(":")[0]:
            text = " ".join(p for p in pending if p)
            if number in comments:
                text = (text + " " + comments[number]).strip()
            out[field.group(1)] = (section, text)
        pending = []
    return out


def _names(name: str, info: Any) -> list[str]:
    return env_names(name)


def _default(info: Any) -> str:
    if info.default_factory is not None:
        return "(computed)"
    value = info.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, (tuple, list)):
        return "`" + ",".join(str(v) for v in value) + "`" if value else "empty"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"


def render() -> str:
    comments = _comments()
    parts = [HEADER]
    for section, model in SECTIONS.items():
        rows = []
        for name, info in model.model_fields.items():
            text = comments.get(name, ("", ""))[1].replace("|", "\\|")
            names = " / ".join(f"`{n}`" for n in _names(name, info))
            rows.append(f"| {names} | {_default(info)} | {text} |")
        title = (model.__doc__ or model.__name__).strip().splitlines()[0].rstrip(".")
        parts.append(f"\n## {title} (`settings.{section}`)\n\n| variable | default | what it does |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return "".join(parts)


#: The head of .env.example: what the compose file alone reads, and the secrets it requires.
ENV_EXAMPLE_HEAD = """# Every setting recsys-faust reads, with its default and meaning. Copy to .env and edit:
#   cp .env.example .env
# The worker, the CLI and docker/docker-compose.yml read it (real environment variables win).
# A commented line is the default; uncomment to change it. tests/deploy/test_compose.py checks
# that this file lists every setting, each with its true default.

# --- docker/docker-compose.yml (compose only; not read by the code) ---------------------
# Every secret below ships empty and compose refuses to start until it is set, and the workers
# run in production mode (RECSYS_PRODUCTION=true): a placeholder or a secret under 32 characters
# stops them. `recsys-faust keys secrets >> .env` writes fresh values for all of them.
POSTGRES_PASSWORD=
GRAFANA_ADMIN_PASSWORD=
# IMAGE_TAG=0.1.0
# LB_HTTP_PORT=8080
# PROMETHEUS_PORT=9090
# GRAFANA_PORT=3000

# Required by the compose file: the API's tokens (comma-separated lists; rotate by adding the
# new token, moving the clients, then removing the old one).
RECSYS_API_TOKEN=
RECSYS_READ_TOKENS=
RECSYS_INGEST_TOKENS=
RECSYS_METRICS_TOKEN=
# The workers' database role (created by the init service: rows only, no DDL), and the
# retrainer's (SELECT only).
RECSYS_DB_WORKER_PASSWORD=
RECSYS_DB_READER_PASSWORD=
# Requests one worker forwards to another carry an HMAC with this secret.
RECSYS_FORWARD_SECRET=
# The model signing pair: the retrainer signs, the workers fold only what is signed.
RECSYS_MODEL_SIGNING_KEY=
RECSYS_MODEL_VERIFY_KEY=


"""


def render_env_example() -> str:
    """.env.example: the head above, then every setting by section, commented, at its default
    (those the head sets say so). ``python -m recsys_faust.settings_doc --env-example``."""
    set_above = {line.split("=", 1)[0] for line in ENV_EXAMPLE_HEAD.splitlines() if line and line[0].isupper()}
    comments = _comments()
    parts = [ENV_EXAMPLE_HEAD]
    for section, model in SECTIONS.items():
        title = (model.__doc__ or section).strip().splitlines()[0].rstrip(".")
        parts.append(f"# --- {section}: {title} " + "-" * max(3, 90 - len(section) - len(title)) + "\n")
        for name, info in model.model_fields.items():
            names = env_names(name)
            text = comments.get(name, ("", ""))[1]
            if len(names) > 1 and name != "weights":
                text += f" (also {', '.join(names[1:])})"
            parts.append(f"# {text}\n")
            if name == "weights":
                weights = info.get_default(call_default_factory=True)
                parts.extend(f"# {n}={getattr(weights, n.removeprefix('RECSYS_WEIGHT_').lower())}\n" for n in names)
                continue
            if names[0] in set_above:
                parts.append(f"# {names[0]}: set above\n")
                continue
            value = info.get_default(call_default_factory=True)
            if info.default_factory is not None and not isinstance(value, dict):
                value = None  # computed per process (the host name, the worker's name)
            shown = "" if value is None else (json.dumps(value) if isinstance(value, dict) else value)
            parts.append(f"# {names[0]}={shown}\n")
        parts.append("\n")
    return "".join(parts).rstrip("\n") + "\n"


if __name__ == "__main__":  # pragma: no cover - a command
    import sys

    print(render_env_example() if "--env-example" in sys.argv else render(), end="")
