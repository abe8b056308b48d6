"""The route table on a real aiohttp server (Faust's aiohttp driver) with in-memory state.

No broker: the tables are dicts, the topics record what is sent, the owner lookup is told who
owns a user. What is checked is what the views themselves decide: status codes and error
bodies, auth scopes, body limits, what reaches a topic, and forwarding to the owning worker.
"""

from __future__ import annotations

import asyncio
import json

import faust
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from recsys_faust.popularity.trending import PopularityIndex
from recsys_faust.profiles.profile import ProfileConfig, apply_event, new_profile
from recsys_faust.events.model import Event
from recsys_faust.ranking.model.active import ModelHolder
from recsys_faust.ranking.policy.ranker import Ranker
from recsys_faust.ranking.runtime.ready_values import ready_entry
from recsys_faust.ranking.strategies import POPULARITY_MODEL_VERSION
from recsys_faust.transitions.index import TransitionIndex
from recsys_faust.serving.service import Recommender
from recsys_faust.profiles.recent_users import RecentUsers
from recsys_faust.settings import Settings
from recsys_faust.web import views
from tests.unit.factories import B, popularity_entry

SELF = ("worker-a", 6066)


class RecordingTopic:
    """A topic handle that keeps what was sent (``await (await send(...)))`` like Faust's)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, *, key, value):
        self.sent.append((key, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class Owners:
    def __init__(self) -> None:
        self.of: dict[str, tuple[str, int]] = {}
        self.assigning = False

    def owner(self, user_id):
        if self.assigning:
            raise KeyError(user_id)
        return self.of.get(user_id, SELF)


def _state(settings: Settings):
    idx = PopularityIndex(window_s=200, bucket_s=B, refresh_s=0)
    idx.put("hot@0", popularity_entry("hot", "x", [(1000, 5.0)], 0))
    profile = new_profile("u1")
    apply_event(profile, Event("purchase", "e1", "u1", 1000.0, product_id="bought", category="x"),
                ("amazon-purchases", 0, 0), ProfileConfig())
    ready = {"u1": ready_entry((["r1", "r2", "r3"], [3.0, 2.0, 1.0], ["x", "y", "x"]), "popular",
                               POPULARITY_MODEL_VERSION, 100.0)}
    recommender = Recommender(settings.ranking, {"u1": profile}, ready,
                              Ranker(settings, idx, TransitionIndex(), ModelHolder()))
    return idx, {"u1": profile}, recommender


async def _client(settings: Settings, topics=None, owners=None, health=None, reasons=None, active=None,
                  recovering=None):
    app = faust.App("views-test", broker="memory://", store="memory://", web_enabled=True)
    idx, profiles, recommender = _state(settings)

    async def healthy():
        return {"status": "ok", "ready": {"ready": True, "reasons": []}} if health is None else health

    ctx = views.WebContext(settings=settings, recommender=recommender, profiles=profiles, index=idx,
                           topics=topics or {}, health=healthy, models=ModelHolder(),
                           readiness=lambda: list(reasons or []))
    if active is not None:
        ctx.active_users = active.newest
    if recovering is not None:
        ctx.recovering = recovering
    ctx.self_ident = SELF
    ctx.owners = owners or Owners()
    views.mount(app, ctx)
    client = TestClient(TestServer(app.web.web_app))
    await client.start_server()
    return app, client


@pytest.fixture
async def open_client():
    app, client = await _client(Settings())
    yield client
    await client.close()


async def test_recommendations_come_from_the_ready_list_and_filters_apply(open_client):
    resp = await open_client.get("/api/recommendations/u1?k=2")
    body = await resp.json()
    assert resp.status == 200
    assert [i["product_id"] for i in body["items"]] == ["r1", "r2"]
    assert body["strategy"] == "popular" and body["model_version"] == POPULARITY_MODEL_VERSION
    resp = await open_client.get("/api/recommendations/u1?k=2&exclude=r1")
    assert [i["product_id"] for i in (await resp.json())["items"]] == ["r2", "r3"]


@pytest.mark.parametrize("query", ["k=0", "k=101", "k=ten"])
async def test_k_out_of_range_is_a_400_with_a_reason(open_client, query):
    resp = await open_client.get(f"/api/recommendations/u1?{query}")
    body = await resp.json()
    assert resp.status == 400 and body["error"] == "bad_request" and "'k'" in body["detail"]


async def test_profile_is_the_public_view_and_unknown_users_are_404(open_client):
    resp = await open_client.get("/api/users/u1/profile")
    body = await resp.json()
    assert resp.status == 200 and body["recent_items"][0]["product_id"] == "bought"
    assert "applied" not in body and "ids" not in body  # bookkeeping stays inside
    resp = await open_client.get("/api/users/nobody/profile")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_unknown_routes_and_methods_are_json_errors_too(open_client):
    resp = await open_client.post("/api/trending")
    body = await resp.json()
    assert resp.status == 405 and body["error"] == "method_not_allowed" and "GET" in resp.headers["Allow"]
    resp = await open_client.get("/api/no/such/route")
    body = await resp.json()
    assert resp.status == 404 and body == {"error": "not_found", "detail": "GET /api/no/such/route: Not Found"}


async def test_ingest_sends_one_record_and_refuses_bad_bodies_before_the_topic():
    topic = RecordingTopic()
    app, client = await _client(Settings(max_event_bytes=1024), topics={"amazon-product-views": topic})
    try:
        resp = await client.post("/api/events/view", json={"user_id": "u9", "product_id": "p1"})
        body = await resp.json()
        assert resp.status == 202 and body["topic"] == "amazon-product-views"
        assert len(topic.sent) == 1
        key, value = topic.sent[0]
        sent = json.loads(value)
        assert key == b"u9" and sent["event_id"] == body["event_id"] and isinstance(sent["timestamp"], float)
        for payload, status, error in [
            (b"x" * 5000, 413, "too_large"),
            (b"{not json", 400, "not_json"),
            (b"[1, 2]", 400, "not_object"),
            (json.dumps({"user_id": "u9"}).encode(), 400, None),   # no product_id
        ]:
            resp = await client.post("/api/events/view", data=payload)
            got = await resp.json()
            assert resp.status == status, (payload[:20], got)
            assert set(got) == {"error", "detail"} and (error is None or got["error"] == error)
        resp = await client.post("/api/events/teleport", json={})
        assert resp.status == 404 and (await resp.json())["error"] == "unknown_kind"
        assert len(topic.sent) == 1  # nothing refused reached the topic
    finally:
        await client.close()


async def test_scopes_401_without_a_token_403_with_a_wrong_one_and_both_rotation_tokens_pass():
    settings = Settings(read_tokens="old-token,new-token", ingest_tokens="ingest-token")
    app, client = await _client(settings, topics={"amazon-product-views": RecordingTopic()})
    try:
        assert (await client.get("/api/trending")).status == 401
        assert (await client.get("/api/trending", headers={"Authorization": "Bearer nope"})).status == 403
        for token in ("old-token", "new-token"):
            resp = await client.get("/api/trending", headers={"Authorization": f"Bearer {token}"})
            assert resp.status == 200 and (await resp.json())["items"][0]["product_id"] == "hot"
        # A read token is not an ingest token.
        resp = await client.post("/api/events/view", json={"user_id": "u", "product_id": "p"},
                                 headers={"Authorization": "Bearer new-token"})
        assert resp.status == 403
        assert (await client.get("/api/ping")).status == 200   # open whatever the tokens
    finally:
        await client.close()


async def test_a_request_for_another_workers_user_is_forwarded_with_the_callers_credentials():
    seen: list[dict] = []

    async def owner_side(request: web.Request) -> web.Response:
        seen.append({"path": request.path_qs, "auth": request.headers.get("Authorization"),
                     "forwarded": request.headers.get(views.FORWARDED)})
        return web.json_response({"answered_by": "owner"})

    owner_app = web.Application()
    owner_app.router.add_get("/api/recommendations/{user_id}", owner_side)
    owner = TestServer(owner_app)
    await owner.start_server()
    owners = Owners()
    owners.of["u2"] = (owner.host, owner.port)
    settings = Settings(read_tokens="t1")
    app, client = await _client(settings, owners=owners)
    try:
        resp = await client.get("/api/recommendations/u2?k=3", headers={"Authorization": "Bearer t1"})
        assert resp.status == 200 and await resp.json() == {"answered_by": "owner"}
        assert seen == [{"path": "/api/recommendations/u2?k=3", "auth": "Bearer t1",
                         "forwarded": settings.web.web_url}]
        # Already forwarded once: answered here, never bounced on.
        resp = await client.get("/api/recommendations/u2", headers={"Authorization": "Bearer t1",
                                                                    views.FORWARDED: "x"})
        assert resp.status == 200 and "items" in await resp.json() and len(seen) == 1
        # Partitions being assigned, or the owner gone: popular items, marked degraded, never a 5xx
        # (a profile has no such fallback: 503 with the reason).
        owners.assigning = True
        resp = await client.get("/api/recommendations/u2", headers={"Authorization": "Bearer t1"})
        got = await resp.json()
        assert resp.status == 200 and got["degraded"] == "unavailable" and got["strategy"] == "popular"
        assert [i["product_id"] for i in got["items"]][:1] == ["hot"]
        resp = await client.get("/api/users/u2/profile", headers={"Authorization": "Bearer t1"})
        assert resp.status == 503 and (await resp.json())["error"] == "unavailable"
        await owner.close()
        owners.assigning = False
        resp = await client.get("/api/recommendations/u2", headers={"Authorization": "Bearer t1"})
        got = await resp.json()
        assert resp.status == 200 and got["degraded"] == "owner_unreachable" and got["strategy"] == "popular"
        assert len(seen) == 1  # the dead owner was asked, and nothing answered
    finally:
        await client.close()
        await app.http_client.close()


async def test_rate_limit_answers_429_with_retry_after_per_client():
    app, client = await _client(Settings(rate_limit_rps=0.001, rate_limit_burst=2, read_tokens="a,b"))
    try:
        statuses = [(await client.get("/api/trending", headers={"Authorization": "Bearer a"})).status
                    for _ in range(3)]
        assert statuses == [200, 200, 429]
        resp = await client.get("/api/trending", headers={"Authorization": "Bearer a"})
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        # Another client has its own bucket.
        assert (await client.get("/api/trending", headers={"Authorization": "Bearer b"})).status == 200
    finally:
        await client.close()


async def test_the_rate_limit_cannot_be_sidestepped_by_spacing_or_a_forged_forwarding_header():
    settings = Settings(rate_limit_rps=0.001, rate_limit_burst=4, read_tokens="tok", forward_secret="f" * 32)
    app, client = await _client(settings)
    try:
        spellings = ["Bearer tok", "Bearer  tok", "Bearer tok ", "Bearer   tok", "Bearer tok\t", "Bearer tok  "]
        statuses = [(await client.get("/api/trending", headers={"Authorization": h})).status for h in spellings]
        assert statuses == [200] * 4 + [429] * 2            # one client, one bucket
        forged = {"Authorization": "Bearer tok", views.FORWARDED: "http://worker-b:6066",
                  "X-Recsys-Forward-Proof": "1:00"}
        assert (await client.get("/api/trending", headers=forged)).status == 429
        from recsys_faust.web.forwarding import PROOF, proof
        signed = {**forged, PROOF: proof(b"f" * 32, "GET", "/api/trending")}
        assert (await client.get("/api/trending", headers=signed)).status == 200   # a worker's, proven
    finally:
        await client.close()


async def test_failed_authentication_is_throttled_per_address_before_tokens_are_checked():
    settings = Settings(read_tokens="right", auth_failure_rps=0.001, auth_failure_burst=5)
    app, client = await _client(settings)
    try:
        statuses = [(await client.get("/api/trending", headers={"Authorization": f"Bearer guess{n}"})).status
                    for n in range(8)]
        assert statuses == [403] * 5 + [429] * 3
        # once throttled, even the right token from that address waits: guessing gains nothing
        assert (await client.get("/api/trending", headers={"Authorization": "Bearer right"})).status == 429
        assert (await client.get("/api/ping")).status == 200   # open routes are not affected
    finally:
        await client.close()


async def test_the_full_health_document_needs_the_admin_or_metrics_token():
    settings = Settings(metrics_token="m" * 32, api_token="a" * 32)
    doc = {"status": "ok", "ready": {"ready": True, "reasons": []}, "broker": "kafka://secret-host:9092"}
    app, client = await _client(settings, health=doc)
    try:
        resp = await client.get("/api/health")
        body = await resp.json()
        assert resp.status == 200 and body["ready"] is True and "broker" not in body
        for token in ("m" * 32, "a" * 32):
            resp = await client.get("/api/health", headers={"Authorization": f"Bearer {token}"})
            assert (await resp.json())["broker"] == "kafka://secret-host:9092"
    finally:
        await client.close()


async def test_health_and_ready_take_readinesss_status_code_and_live_does_not():
    why = ["broker unreachable: no metadata answer for 9 s"]
    app, client = await _client(Settings(), health={"status": "down", "ready": {"ready": False, "reasons": why}},
                                reasons=why)
    try:
        resp = await client.get("/api/health")
        assert resp.status == 503 and (await resp.json())["ready"]["reasons"] == why
        resp = await client.get("/api/health/ready")
        assert resp.status == 503 and (await resp.json())["reasons"] == why
        resp = await client.get("/api/health/live")
        assert resp.status == 200 and (await resp.json())["live"] is True
    finally:
        await client.close()
    app, client = await _client(Settings())
    try:
        resp = await client.get("/api/health/ready")
        assert resp.status == 200 and await resp.json() == {"ready": True, "reasons": [], "worker": Settings().process.worker_name}
    finally:
        await client.close()


async def test_openapi_describes_exactly_the_routes_and_methods_the_server_serves(open_client):
    resp = await open_client.get("/api/openapi.json")
    doc = await resp.json()
    assert resp.status == 200 and doc["openapi"].startswith("3.")
    served = set()
    for route in open_client.server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("GET", "POST", "PUT", "DELETE") and path:
            served.add((path, route.method.lower()))
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == served
    # Security follows the views' scopes: the read routes need a bearer token, ping does not.
    assert doc["paths"]["/api/recommendations/{user_id}"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/api/ping"]["get"]
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_a_route_without_a_description_is_refused():
    from recsys_faust.web.openapi import document

    class Undocumented(views.ApiView):
        async def get(self, request):
            return self.json({})

    with pytest.raises(KeyError, match="no entry"):
        document([*views.ROUTES, ("/api/new", Undocumented)])


async def test_active_users_are_this_workers_newest_and_k_is_checked():
    recent = RecentUsers()
    recent.touch(["u1", "u2", "u3"])
    app, client = await _client(Settings(), active=recent)
    try:
        resp = await client.get("/api/users/active?k=2")
        assert resp.status == 200 and (await resp.json())["users"] == ["u3", "u2"]
        resp = await client.get("/api/users/active?k=0")
        assert resp.status == 400
        resp = await client.get("/api/users/active/profile")  # a user named "active" still has a profile route
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    finally:
        await client.close()


async def test_an_owner_rebuilding_tables_after_a_rebalance_marks_its_answers_recovering():
    rebuilding = [True]
    app, client = await _client(Settings(), recovering=lambda: rebuilding[0])
    try:
        got = await (await client.get("/api/recommendations/u1")).json()
        assert got["degraded"] == "recovering" and got["items"]
        rebuilding[0] = False
        got = await (await client.get("/api/recommendations/u1")).json()
        assert "degraded" not in got and got["items"]
    finally:
        await client.close()


async def test_a_reload_reports_the_switch_even_when_this_workers_own_tail_switched_first(tmp_path):
    """Publishing awaits the broker's acknowledgement; meanwhile the worker's own tail of
    amazon-model-updates may read the announcement and switch. The answer must still say that
    this call switched the worker (it was on another version before)."""
    import numpy as np

    from recsys_faust.ranking.model.artifact import ModelArtifact, load, save

    save(ModelArtifact("als-20260101T000000Z", ["a", "b"], np.eye(2, dtype=np.float32),
                       manifest={"created_at": 1.0}), tmp_path)
    app, client = await _client(Settings(api_token="admin-token", models_dir=tmp_path))
    ctx_models = app.web_context.models   # the holder the view reads

    async def publish_and_tail_switches(artifact):
        ctx_models.switch(load(tmp_path / artifact.version), 1.0)

    app.web_context.publish_model = publish_and_tail_switches
    try:
        auth = {"Authorization": "Bearer admin-token"}
        resp = await client.post("/api/reload-models", headers=auth)
        assert resp.status == 200
        assert await resp.json() == {"model_version": "als-20260101T000000Z", "switched": True, "published": True}
        assert ctx_models.active.version == "als-20260101T000000Z"
        resp = await client.post("/api/reload-models", headers=auth)   # already on it: nothing switches
        assert await resp.json() == {"model_version": "als-20260101T000000Z", "switched": False, "published": True}
    finally:
        await client.close()


async def test_explain_adds_the_reasons_to_each_item_and_a_bad_flag_is_a_400(open_client):
    plain = await (await open_client.get("/api/recommendations/u1?k=2")).json()
    assert all("because" not in it for it in plain["items"])
    got = await (await open_client.get("/api/recommendations/u1?k=2&explain=true")).json()
    assert [it["product_id"] for it in got["items"]] == [it["product_id"] for it in plain["items"]]
    assert all(isinstance(it["because"], list) for it in got["items"])
    resp = await open_client.get("/api/recommendations/u1?explain=maybe")
    assert resp.status == 400 and "explain" in (await resp.json())["detail"]


async def test_erasing_a_user_writes_one_record_keyed_by_them_and_needs_the_admin_token():
    erasures = RecordingTopic()
    app, client = await _client(Settings(api_token="admin-token"), topics={"recsys-erasures": erasures})
    try:
        assert (await client.delete("/api/users/u1")).status == 401
        assert (await client.delete("/api/users/u1", headers={"Authorization": "Bearer nope"})).status == 403
        resp = await client.delete("/api/users/u1", headers={"Authorization": "Bearer admin-token"})
        body = await resp.json()
        assert resp.status == 202 and body["user_id"] == "u1"
        ((key, value),) = erasures.sent
        assert key == b"u1" and json.loads(value)["erased_at"] == body["erased_at"]
    finally:
        await client.close()


async def test_a_catalogue_rule_is_checked_and_sent_keyed_by_the_product():
    catalogue = RecordingTopic()
    app, client = await _client(Settings(api_token="admin-token"), topics={"recsys-catalogue": catalogue})
    auth = {"Authorization": "Bearer admin-token"}
    try:
        resp = await client.put("/api/products/p1", json={"boost": 99}, headers=auth)
        assert resp.status == 400 and "boost" in (await resp.json())["detail"] and not catalogue.sent
        resp = await client.put("/api/products/p1", json={"available": False}, headers=auth)
        assert resp.status == 202
        ((key, value),) = catalogue.sent
        assert key == b"p1" and json.loads(value) == {"product_id": "p1", "available": False, "category": None,
                                                      "boost": 1.0, "hidden_until": None}
    finally:
        await client.close()
