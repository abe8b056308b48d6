"""Rotating a token without a restart: the worker reads RECSYS_TOKENS_FILE again within a
second of a change, so the new token works and, once removed, the old one is refused, while the
process is the same."""

from __future__ import annotations

import pytest

from .helpers import http, wait_until

pytestmark = pytest.mark.integration


def status(worker, token: str) -> int:
    return http("GET", f"{worker.url}/api/trending?k=1", headers={"Authorization": f"Bearer {token}"})[0]


def test_add_move_remove_without_a_restart(stack, tmp_path):
    tokens = tmp_path / "tokens.env"
    tokens.write_text("RECSYS_READ_TOKENS=old-token\n")
    worker = stack.add_worker("w1", extra_env={"RECSYS_TOKENS_FILE": str(tokens)})
    pid = worker.proc.pid
    assert status(worker, "old-token") == 200 and status(worker, "new-token") == 403
    tokens.write_text("RECSYS_READ_TOKENS=old-token,new-token\n")        # 1. add the new one
    wait_until(lambda: status(worker, "new-token") == 200, 15, what="the new token accepted")
    assert status(worker, "old-token") == 200                            # 2. clients move meanwhile
    tokens.write_text("RECSYS_READ_TOKENS=new-token\n")                  # 3. remove the old one
    wait_until(lambda: status(worker, "old-token") == 403, 15, what="the old token refused")
    assert status(worker, "new-token") == 200
    assert worker.proc.pid == pid and worker.alive()
