"""Rotating a token without a restart: the worker reads RECSYS_TOKENS_FILE again within a
second of a change, so the new token works and, once removed, the old one is refused, while the
process is the same. The file fails closed: an emptied line, or the file removed, refuses
everyone; the environment's tokens never come back."""

from __future__ import annotations

import pytest

from .helpers import http, wait_until

pytestmark = pytest.mark.integration


def status(worker, token: str) -> int:
    return http("GET", f"{worker.url}/api/trending?k=1", headers={"Authorization": f"Bearer {token}"})[0]


def test_add_move_remove_without_a_restart(stack, tmp_path):
    tokens = tmp_path / "tokens.env"
    metrics = "metrics-token-for-the-stack-checks"   # in the file and in the environment the stack reads
    tokens.write_text(f"RECSYS_READ_TOKENS=old-token\nRECSYS_METRICS_TOKEN={metrics}\n")
    worker = stack.add_worker("w1", extra_env={"RECSYS_TOKENS_FILE": str(tokens), "RECSYS_METRICS_TOKEN": metrics,
                                               "RECSYS_READ_TOKENS": "env-token"})
    pid = worker.proc.pid
    assert status(worker, "old-token") == 200 and status(worker, "new-token") == 403
    assert status(worker, "env-token") == 403                            # the file is the only source
    tokens.write_text(f"RECSYS_READ_TOKENS=old-token,new-token\nRECSYS_METRICS_TOKEN={metrics}\n")  # 1. add
    wait_until(lambda: status(worker, "new-token") == 200, 15, what="the new token accepted")
    assert status(worker, "old-token") == 200                            # 2. clients move meanwhile
    tokens.write_text(f"RECSYS_READ_TOKENS=new-token\nRECSYS_METRICS_TOKEN={metrics}\n")  # 3. remove the old one
    wait_until(lambda: status(worker, "old-token") == 403, 15, what="the old token refused")
    assert status(worker, "new-token") == 200
    tokens.write_text(f"RECSYS_READ_TOKENS=\nRECSYS_METRICS_TOKEN={metrics}\n")   # an emptied line
    wait_until(lambda: status(worker, "new-token") == 401, 15, what="the emptied scope closed")
    assert http("GET", f"{worker.url}/api/trending?k=1")[0] == 401              # not opened
    tokens.write_text(f"RECSYS_READ_TOKENS=new-token\nRECSYS_METRICS_TOKEN={metrics}\n")
    wait_until(lambda: status(worker, "new-token") == 200, 15, what="the token back")
    tokens.unlink()                                                              # the file gone
    wait_until(lambda: status(worker, "new-token") == 401, 15, what="every scope closed without the file")
    assert status(worker, "env-token") == 401                                    # no fallback
    assert worker.proc.pid == pid and worker.alive()
