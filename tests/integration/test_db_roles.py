"""Database access control on a real PostgreSQL: `db init --worker-role` makes a login role that
can read and insert rows but cannot create, drop or alter a table, and a worker running as it
(with RECSYS_DB_MIGRATE=false) stores every event; `--reader-role` makes one that may only read
(the retrainer)."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import produce_events, wait_until

pytestmark = pytest.mark.integration
WITH_DATABASE = True
ROLE = "recsys_worker"
READER = "recsys_reader"


def as_role(stack, role: str) -> str:
    return stack.postgres.url.replace("postgresql://postgres@", f"postgresql://{role}@")


@pytest.fixture(scope="module")
def role(stack):
    env = {**os.environ, **stack.env, "RECSYS_DB_WORKER_PASSWORD": "s3cret-worker",
           "RECSYS_DB_READER_PASSWORD": "s3cret-reader"}
    out = subprocess.run([sys.executable, "-m", "recsys_faust", "db", "init", "--worker-role", ROLE,
                          "--reader-role", READER], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout + out.stderr  # the password is never printed
    again = subprocess.run([sys.executable, "-m", "recsys_faust", "db", "init", "--worker-role", ROLE], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr  # idempotent: the role is updated, not re-created
    return as_role(stack, ROLE)


@pytest.mark.parametrize("statement", [
    "CREATE TABLE intruder (x int)",
    "DROP TABLE interactions",
    "ALTER TABLE interactions ADD COLUMN x int",
    "DELETE FROM interactions",
    "TRUNCATE interactions",
    "INSERT INTO schema_migrations (version, name) VALUES (999, 'forged')",   # only the owner records migrations
])
def test_the_worker_role_cannot_change_the_schema_or_delete(stack, role, statement):
    with psycopg.connect(role) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_a_worker_as_that_role_without_migrating_stores_every_event(stack, role):
    worker = stack.add_worker("w1", extra_env={"DATABASE_URL": role, "RECSYS_DB_MIGRATE": "false"})
    events = synthetic_events(ShopSpec(users=30, items=40, categories=3, events_per_user=6, seed=9),
                              end=1_750_000_000.0)
    produce_events(stack.broker.bootstrap, events)
    interactions = {o["event_id"] for k, o in events if k != "user-event"}

    def stored():
        with psycopg.connect(stack.postgres.url) as conn:
            return conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
    wait_until(lambda: stored() == len(interactions), 60, what=f"{len(interactions)} interactions stored")
    with psycopg.connect(stack.postgres.url) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'interactions'").fetchone()[0]
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    assert owner == "postgres" and users == len({o["user_id"] for k, o in events if k != "user-event"})
    assert worker.alive()


@pytest.mark.parametrize("statement", [
    "INSERT INTO interactions (event_id) VALUES ('forged')",
    "UPDATE users SET first_seen = now()",
    "DELETE FROM interactions",
    "CREATE TABLE intruder (x int)",
])
def test_the_reader_role_may_only_read(stack, role, statement):
    reader = as_role(stack, READER)
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM interactions").fetchone()[0] >= 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_the_worker_role_erases_only_through_the_owners_function(stack, role):
    """No DELETE, yet an erasure: ``recsys_erase_user`` (SECURITY DEFINER) deletes one user's
    rows from before the erasure and writes the audit row; the role cannot forge audit rows,
    and the reader role cannot call it."""
    with psycopg.connect(stack.postgres.url) as owner:
        owner.execute("INSERT INTO interactions (event_id, kind, user_id, product_id, ts, payload) VALUES "
                      "('role-e1', 'view', 'role-victim', 'p1', to_timestamp(100), '{}'), "
                      "('role-e2', 'view', 'role-victim', 'p1', to_timestamp(300), '{}'), "
                      "('role-e3', 'view', 'role-other', 'p1', to_timestamp(100), '{}')")
    with psycopg.connect(role, autocommit=True) as conn:
        deleted = conn.execute("SELECT recsys_erase_user('role-victim', to_timestamp(200))").fetchone()[0]
        assert deleted["interactions"] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO user_erasures (user_hash, erased_at) VALUES ('forged', now())")
    with psycopg.connect(stack.postgres.url) as owner:
        left = owner.execute("SELECT event_id FROM interactions WHERE event_id LIKE 'role-e%' ORDER BY 1").fetchall()
        assert [r[0] for r in left] == ["role-e2", "role-e3"]   # the later event and the other user stay
    with psycopg.connect(as_role(stack, READER)) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT recsys_erase_user('role-other', now())")
