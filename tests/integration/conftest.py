"""Integration fixtures: a real Tansu broker, real worker processes, real HTTP.

Each test module gets its own broker (memory storage) so modules cannot see each other's
topics. A failure prints the tail of every worker's log.
"""

from __future__ import annotations

import pytest

from recsys_faust.devstack.stack import DevStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    database = getattr(request.module, "WITH_DATABASE", False)
    durable = getattr(request.module, "DURABLE_BROKER", False)  # Tansu's log on a local S3 server
    st = DevStack(tmp_path_factory.mktemp("stack"), partitions=4, database=database, durable_broker=durable).start()
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
