"""`recsys-faust soak` in its one-minute form: a real stack under a steady event rate and HTTP
load. The command's own verdict (exit 0) means no HTTP error, no dead letter, the worker alive
and every produced event applied once the load stopped; the test reads its figures back too."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def test_one_minute_soak_applies_every_event_without_errors_and_memory_stays_flat(tmp_path):
    out = tmp_path / "soak"
    proc = subprocess.run([sys.executable, "-m", "recsys_faust", "soak", "--minutes", "1", "--rate", "100",
                           "--users", "500", "--sample-s", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((out / "soak.json").read_text())
    assert figures["ok"] and figures["errors"] == 0 and figures["dead_letters"] == 0
    assert figures["produced"] > 3_000 and figures["applied"] == figures["produced"]
    samples = figures["samples"]
    assert len(samples) >= 10 and sum(s["requests"] for s in samples[-1:]) > 100
    # Bounded memory: the worker and its scoring process do not keep growing with the events.
    assert figures["rss_mib_second_half_max"] < 1.5 * figures["rss_mib_first_half_max"]
    assert (out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
