"""Integration fixtures: a real Apache Kafka broker (KRaft, from Maven Central's jars), real
worker processes, real HTTP.

Each test module gets its own broker so modules cannot see each other's topics. A module may
ask for three brokers (``BROKERS = 3``) or for the dev broker Tansu (``BROKER = "tansu"``, the
smoke tier that keeps the pip-only path true); ``RECSYS_TEST_BROKER=tansu`` runs every module
on Tansu. A failure prints the tail of every worker's log.
"""

from __future__ import annotations

import os

import pytest

from recsys_faust.devstack.stack import DevStack


def broker_kind(module) -> str:
    return os.environ.get("RECSYS_TEST_BROKER") or getattr(module, "BROKER", "kafka")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    database = getattr(request.module, "WITH_DATABASE", False)
    durable = getattr(request.module, "DURABLE_BROKER", False)  # Tansu's log on a local S3 server
    st = DevStack(tmp_path_factory.mktemp("stack"), partitions=4, database=database, durable_broker=durable,
                  broker=broker_kind(request.module), brokers=getattr(request.module, "BROKERS", 1)).start()
    yield st
    st.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        st = item.funcargs.get("stack")
        if st is not None:
            for w in st.workers:
                rep.sections.append((f"log tail of {w.name}", w.tail(60)))
