"""Schemathesis against a real worker, over every route of its own /api/openapi.json: no 5xx,
and every response's status, content type and body conform to the document. Tokens are on (one
token for every scope), so the authorised paths are the ones exercised; a bounded number of
examples per operation keeps it to about a minute."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.training.als import ALSParams
from recsys_faust.training.train import publish, train_events

from .helpers import produce_events, wait_until

pytestmark = pytest.mark.integration
TOKEN = "fuzz-token"
MAX_EXAMPLES = 25
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_schemathesis_finds_no_server_error_and_no_nonconforming_response(stack, tmp_path):
    st = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    worker = stack.add_worker("w1", extra_env={k: TOKEN for k in (
        "RECSYS_READ_TOKENS", "RECSYS_INGEST_TOKENS", "RECSYS_API_TOKEN", "RECSYS_METRICS_TOKEN")})
    events = synthetic_events(ShopSpec(users=20, items=30, categories=3, events_per_user=5, seed=2),
                              end=1_750_000_000.0)
    produce_events(stack.broker.bootstrap, events)
    # A model, so that similar items answer (without one they are 503: no model yet).
    settings = stack.settings.with_overrides(models_dir=tmp_path / "models")
    trained = train_events(settings, events, ALSParams(factors=8, iterations=3), "fuzz shop")
    asyncio.run(publish(settings, trained.artifact))
    wait_until(lambda: worker.get("/api/health")[1]["model_version"] == trained.artifact.version, 60,
               what="the model to load")
    out = subprocess.run(
        [st, "run", f"{worker.url}/api/openapi.json", "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES),
         "-H", f"Authorization: Bearer {TOKEN}", "--seed", "1", "--no-color", "--workers", "1",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path)  # its cache (.schemathesis/) stays out of the repository
    summary = out.stdout[-3000:]
    print(summary)
    assert out.returncode == 0, summary + out.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", summary)
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    assert tested and selected and int(tested.group(1)) == int(selected.group(2)) >= 13, summary
    cases = re.search(r"(\d+) generated", summary)
    print(f"schemathesis: {tested.group(1)} operations, {cases.group(1) if cases else '?'} test cases, 0 failures")
    assert worker.alive()
    # The worker still answers correctly after the fuzzing.
    status, body = worker.get("/api/health")   # with the operator's token: the full document
    assert status == 200 and body["status"] in ("ok", "degraded")


HOSTILE = {
    "nested 2,000 deep": (b'{"user_id":"u1","product_id":"p1","rating":5,"x":' + b"[" * 2000 + b"]" * 2000 + b"}",
                          "too_deep"),
    "nested 40 deep": (b'{"user_id":"u1","product_id":"p1","rating":5,"x":' + b'{"a":' * 40 + b"1" + b"}" * 41,
                       "too_deep"),
    "NaN": (b'{"user_id":"u1","product_id":"p1","rating":NaN}', "not_json"),
    "Infinity": (b'{"user_id":"u1","product_id":"p1","rating":Infinity}', "not_json"),
    "a number past double": (b'{"user_id":"u1","product_id":"p1","rating":1e999}', "not_json"),
    "a duplicate key": (b'{"user_id":"u1","user_id":"u2","product_id":"p1","rating":5}', "duplicate_key"),
    "invalid UTF-8": (b'{"user_id":"u\xff","product_id":"p1","rating":5}', "not_utf8"),
    "a lone surrogate": (b'{"user_id":"\\ud800","product_id":"p1","rating":5}', "not_json"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_json_bodies_are_400_with_the_reason(stack, case):
    from .helpers import http

    worker = stack.workers[0] if stack.workers else stack.add_worker("w1", extra_env={k: TOKEN for k in (
        "RECSYS_READ_TOKENS", "RECSYS_INGEST_TOKENS", "RECSYS_API_TOKEN", "RECSYS_METRICS_TOKEN")})
    body, code = HOSTILE[case]
    status, answer = http("POST", f"{worker.url}/api/events/review", body,
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status == 400, (status, answer)
    assert answer["error"] == code and answer["detail"], answer
    assert worker.alive()
