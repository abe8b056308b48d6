"""``GET /api/openapi.json``: an OpenAPI 3 description generated from the route table.

Every route of ``views.ROUTES`` and every method its view serves must have an entry in
``OPERATIONS`` (``document()`` raises otherwise, and a test checks the document against the
routes the worker really serves), so the description cannot silently drift from the code.
Security follows each view's ``scope``. Schemathesis runs against a real worker in CI with this
document: no 5xx, and every response conforms to it.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from ..version import __version__

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: Iterable[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": props}


STR = {"type": "string"}
NUM = {"type": "number"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NULLABLE_STR = {"type": "string", "nullable": True}
NULLABLE_NUM = {"type": "number", "nullable": True}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error", "detail"], error=STR, detail=STR),
    "Item": _obj(["product_id", "score"], product_id=STR, score=NUM,
                 because={"type": "array", "description": "with explain=true: the user's items that brought this one: "
                          "via als with their exact share of the item's ALS score (all shares sum to als_score), "
                          "via transitions with the successor count",
                          "items": _obj(["product_id", "via"], product_id=STR,
                                        via={"type": "string", "enum": ["als", "transitions"]},
                                        kind=STR, share=NUM, count=INT)},
                 als_score={**NUM, "description": "with explain=true: the item's ALS score for this user"}),
    "TrendingItem": _obj(["product_id", "score"], product_id=STR, score=NUM, category=NULLABLE_STR),
    "Recommendations": _obj(["user_id", "items", "model_version", "strategy", "generated_at"],
                            user_id=STR, items={"type": "array", "items": _ref("Item")},
                            model_version=STR, strategy=STR, generated_at=NUM,
                            variant={**STR, "description": "the user's A/B variant, when RECSYS_AB_VARIANTS runs a test"},
                            degraded={"type": "string", "enum": ["owner_unreachable", "unavailable", "recovering"],
                                      "description": "present when the answer is not the usual one: the worker owning "
                                                     "the user could not answer (stopped, unreachable, or partitions "
                                                     "being assigned), so popular items instead of an error; or the "
                                                     "owner is rebuilding tables after a rebalance"}),
    "Profile": _obj(["user_id", "first_seen", "last_seen", "counts", "recent_items", "category_affinity", "windows"],
                    user_id=STR, first_seen=NULLABLE_NUM, last_seen=NULLABLE_NUM,
                    counts={"type": "object", "additionalProperties": INT},
                    recent_items={"type": "array", "items": _obj(
                        ["product_id", "kind", "timestamp"], product_id=STR, kind=STR, timestamp=NUM,
                        category=NULLABLE_STR)},
                    category_affinity={"type": "object", "additionalProperties": NUM},
                    windows={"type": "object"}),
    "Trending": _obj(["items", "window_s", "window_end"], items={"type": "array", "items": _ref("TrendingItem")},
                     window_s=INT, window_end=NUM, category=NULLABLE_STR),
    "Similar": _obj(["product_id", "kind", "items", "model_version"], product_id=STR,
                    kind={"type": "string", "enum": ["factors", "next"]},
                    items={"type": "array", "items": _ref("Item")}, model_version=STR),
    "ActiveUsers": _obj(["users", "worker"], users={"type": "array", "items": STR}, worker=STR),
    "Accepted": _obj(["accepted", "event_id", "topic"], accepted=BOOL, event_id=STR, topic=STR),
    "Event": {
        "type": "object", "required": ["user_id"],
        "description": "A view, purchase, review or user event (docs/contract.md); event_id and timestamp "
                       "are filled in when missing. Invalid events get 400 with the reason.",
        "properties": {
            "event_id": STR, "user_id": STR, "product_id": STR, "category": STR,
            "timestamp": {"oneOf": [NUM, STR]}, "price": NUM, "quantity": INT,
            "rating": NUM, "text": STR, "event_type": STR, "properties": {"type": "object"},
        },
    },
    "Health": {"type": "object", "required": ["status", "ready", "worker"],
               "properties": {"status": {"type": "string", "enum": ["ok", "degraded", "down"]},
                              "ready": _ref("Ready"), "worker": STR}},
    "HealthStatus": _obj(["ready", "worker"], ready=BOOL, worker=STR, detail=STR),
    "Ready": _obj(["ready", "reasons"], ready=BOOL, reasons={"type": "array", "items": STR}, worker=STR),
    "Live": _obj(["live", "worker"], live=BOOL, worker=STR),
    "Ping": _obj(["ok"], ok=BOOL),
    "Models": _obj(["model_version", "versions"], model_version=STR, versions={"type": "array", "items": _obj(
        ["model_version", "published_at", "active", "pinned"], model_version=STR, created_at=NULLABLE_NUM,
        published_at=NUM, factors={"type": "integer", "nullable": True}, items={"type": "integer", "nullable": True},
        offline_metrics={"type": "object"}, active=BOOL, pinned=BOOL, bytes=INT)}),
    "Reloaded": _obj(["model_version", "switched"], model_version=STR, switched=BOOL, published=BOOL),
    "Cleared": _obj(["cleared", "cache_epoch"], cleared=BOOL, cache_epoch=NUM, detail=STR),
    "CatalogueRule": _obj(["product_id", "available", "boost"], product_id=STR, available=BOOL,
                          category=NULLABLE_STR, boost={"type": "number", "minimum": 0.25, "maximum": 4},
                          hidden_until=NULLABLE_NUM, topic=STR),
    "Erased": _obj(["user_id", "erased_at", "topic"], user_id=STR, erased_at=NUM, topic=STR, detail=STR),
}

_STATUS_TEXT = {200: "OK", 202: "accepted", 400: "bad request", 401: "no bearer token", 403: "wrong token",
                404: "not found", 405: "method not allowed", 413: "body too large",
                429: "over the rate limit, or too many failed authentications from this address (Retry-After)", 503: "not available now (retry)"}


def _param(name: str, where: str = "query", schema: Optional[dict] = None, required: bool = False,
           description: str = "") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema or STR, **({"description": description} if description else {})}


K = _param("k", schema={"type": "integer", "minimum": 1, "maximum": 100, "default": 10})
CATEGORY = _param("category")


def _op(summary: str, ok: tuple[int, str, Any], *, errors: Iterable[int] = (), params: Iterable[dict] = (),
        body: Optional[str] = None, same_body: Iterable[int] = ()) -> dict[str, Any]:
    """``same_body``: statuses whose body has the 200's schema (readiness's 503), not an Error."""
    status, ctype, schema = ok
    responses: dict[str, Any] = {str(status): {"description": _STATUS_TEXT.get(status, "OK"),
                                               "content": {ctype: {"schema": schema}}}}
    for code in same_body:
        responses[str(code)] = {"description": _STATUS_TEXT[code], "content": {ctype: {"schema": schema}}}
    for code in sorted(set(errors) | {404, 405}):
        responses[str(code)] = {"description": _STATUS_TEXT[code], "content": {JSON: {"schema": _ref("Error")}}}
        if code == 429:
            responses[str(code)]["headers"] = {"Retry-After": {"schema": INT, "description": "seconds"}}
    op: dict[str, Any] = {"summary": summary, "responses": responses, "parameters": list(params)}
    if body:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    return op


READ = (400, 401, 403, 429, 503)
#: view class name -> method -> operation (the security and error codes of scopes are added).
OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "Ping": {"get": _op("A constant answer", (200, JSON, _ref("Ping")))},
    "Health": {"get": _op("The worker's full health document with the admin or metrics token (or while the "
                          "metrics scope is open), else its status alone; readiness's status code",
                          (200, JSON, {"oneOf": [_ref("Health"), _ref("HealthStatus")]}), same_body=(503,))},
    "Live": {"get": _op("The process answers", (200, JSON, _ref("Live")))},
    "Ready": {"get": _op("Whether this worker can answer for its users now; 503 with the reasons",
                         (200, JSON, _ref("Ready")), same_body=(503,))},
    "Recommendations": {"get": _op(
        "Top-k for a user from table state", (200, JSON, _ref("Recommendations")), errors=READ,
        params=(_param("user_id", "path"), K, CATEGORY,
                _param("exclude", schema={"type": "array", "items": STR}, description="product ids to leave out"),
                _param("explain", schema={"type": "boolean", "default": False},
                       description="add to each item the user's items that brought it (because)")))},
    "Profile": {"get": _op("A user's profile from table state", (200, JSON, _ref("Profile")), errors=READ,
                           params=(_param("user_id", "path"),))},
    "User": {"delete": _op("Erase the user everywhere: state on every worker, PostgreSQL rows, and their older "
                           "records read later (docs/erasure.md)", (202, JSON, _ref("Erased")),
                           errors=(400, 401, 403, 429, 503), params=(_param("user_id", "path"),))},
    "ActiveUsers": {"get": _op("Users whose profiles this worker changed last, newest first",
                               (200, JSON, _ref("ActiveUsers")), errors=READ,
                               params=(_param("k", schema={"type": "integer", "minimum": 1, "maximum": 100,
                                                           "default": 20}),))},
    "Trending": {"get": _op("Popular items in the trending window", (200, JSON, _ref("Trending")), errors=READ,
                            params=(K, CATEGORY))},
    "Ingest": {"post": _op("Validate an event and produce it to its topic", (202, JSON, _ref("Accepted")),
                           errors=(400, 401, 403, 413, 429, 503), body="Event",
                           params=(_param("kind", "path", {"type": "string",
                                                           "enum": ["view", "purchase", "review", "user-event"]}),))},
    "Similar": {"get": _op("Items like this one: factor similarity, or what users took next",
                           (200, JSON, _ref("Similar")), errors=READ,
                           params=(_param("product_id", "path"), K,
                                   _param("kind", schema={"type": "string", "enum": ["factors", "next"]})))},
    "Product": {
        "get": _op("The catalogue rule this worker holds for a product", (200, JSON, _ref("CatalogueRule")),
                   errors=(401, 403, 429), params=(_param("product_id", "path"),)),
        "put": _op("Set a product's catalogue rule (available, hidden_until, category, boost): applied to every "
                   "answer on every worker once read", (202, JSON, _ref("CatalogueRule")),
                   errors=(400, 401, 403, 413, 429, 503), body="CatalogueRule", params=(_param("product_id", "path"),)),
    },
    "Models": {"get": _op("Model versions on amazon-model-updates: served, pinned, offline figures",
                          (200, JSON, _ref("Models")), errors=READ)},
    "ReloadModels": {"post": _op("Publish the newest model under RECSYS_MODELS_DIR: every worker switches to it",
                                 (200, JSON, _ref("Reloaded")),
                                 errors=(401, 403, 429, 503))},
    "ClearCache": {"post": _op("Stop serving ready lists built before now, on every worker",
                               (200, JSON, _ref("Cleared")), errors=(401, 403, 429, 503))},
    "Metrics": {"get": _op("Prometheus exposition", (200, "text/plain", STR), errors=(401, 403, 429),
                           params=(_param("name[]", schema={"type": "array", "items": STR},
                                          description="only these metric families"),))},
    "Demo": {"get": _op("The demo page", (200, "text/html", STR))},
    "OpenAPI": {"get": _op("This document", (200, JSON, {"type": "object"}))},
}


def served_methods(view: Any) -> list[str]:
    """The HTTP methods a view implements (Faust's ``View`` answers the others with 405)."""
    from faust.web import View

    return sorted(m for m in ("get", "post", "put", "patch", "delete") if getattr(view, m) is not getattr(View, m))


def document(routes: Iterable[tuple[str, Any]], *, server_url: Optional[str] = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``routes`` (path, view class); KeyError for an undocumented one."""
    paths: dict[str, Any] = {}
    for path, view in routes:
        ops = OPERATIONS.get(view.__name__)
        if ops is None:
            raise KeyError(f"route {path} ({view.__name__}) has no entry in web/openapi.py OPERATIONS")
        served = served_methods(view)
        if sorted(ops) != served:
            raise KeyError(f"route {path}: documented methods {sorted(ops)}, served {served}")
        entry = {}
        for method, op in ops.items():
            op = {**op, "operationId": f"{method}{view.__name__}"}
            if view.scope is not None:
                op["security"] = [{"bearer": []}]
            entry[method] = op
        paths[path] = entry
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "recsys-faust", "version": __version__,
                 "description": "Real-time product recommendations from Kafka-fed table state. "
                                "Errors are {error, detail}; routes with a security requirement need "
                                "`Authorization: Bearer <token>` of their scope once that scope has tokens."},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
