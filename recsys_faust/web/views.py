"""The contract's HTTP routes on Faust web: module-level views in one route table (``ROUTES``),
thin, reading table state through the Recommender.

Per-user routes answer on the worker that owns the user's partition; any other worker forwards
the request there once (marked with a header, so a request caught in a rebalance is answered
from local state instead of bouncing between workers).
"""

from __future__ import annotations

import asyncio
import functools
import math
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Awaitable, Callable, Optional

import aiohttp
import aiohttp.web
import orjson
from faust.types import TP, TableT, TopicT
from faust.web import Request, Response, View
from yarl import URL

from .. import metrics
from ..events.prepare import InvalidEventError, new_id, prepare, prepare_erasure
from ..events import strict_json
from ..catalogue.rules import parse_rule
from ..events.model import KIND_TOPICS, TOPIC_CATALOGUE, Invalid
from ..events.protect import FieldCipher
from ..kafka.internals import owner_url_of
from ..kafka.partitioning import user_partition
from ..popularity.trending import PopularityIndex
from ..profiles.profile import ProfileConfig, profile_view
from ..serving.service import SIMILAR_KINDS, Recommender
from ..settings import Settings
from . import auth
from . import forwarding
from .forwarding import FORWARDED
from .ratelimit import Networks, TokenBuckets, client_address, client_key, retry_after_header, trusted_networks

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


@dataclass
class WebContext:
    settings: Settings
    recommender: Recommender
    profiles: TableT
    index: PopularityIndex
    topics: dict[str, TopicT]
    health: Callable[[], Any]
    readiness: Callable[[], list[str]] = lambda: []   # the reasons this worker is not ready
    recovering: Callable[[], bool] = lambda: False    # tables of newly assigned partitions are being rebuilt
    models: Any = None
    clear_cache: Optional[Callable[[], Awaitable[dict[str, Any]]]] = None
    active_users: Callable[[int], list[str]] = lambda k: []   # the users this worker changed last
    publish_model: Optional[Callable[[Any], Awaitable[Any]]] = None  # an artifact onto amazon-model-updates
    models_summary: Callable[[], list[dict[str, Any]]] = lambda: []   # the registry's versions
    served: Optional[Callable[[str, dict[str, Any], str, bool], Awaitable[None]]] = None  # records an answer (online/monitor.py)
    online: Callable[[], list[dict[str, Any]]] = lambda: []   # this worker's online figures
    # set by register_views
    self_ident: tuple[Optional[str], Optional[int]] = (None, None)
    owners: Any = None
    profile_config: Optional[ProfileConfig] = None
    limiter: Optional[TokenBuckets] = None
    failures: Optional[TokenBuckets] = None   # failed authentication, per client address
    trusted_proxies: Networks = ()
    forward_secret: Optional[bytes] = None   # RECSYS_FORWARD_SECRET: proves a request came from a worker
    cipher: Optional[FieldCipher] = None   # RECSYS_FIELD_KEYS set: sensitive fields sealed before Kafka


def _bool_arg(request: Request, name: str) -> bool:
    """A true/false query flag (absent: false); anything else is a 400 with the reason."""
    raw = request.query.get(name)
    if raw is None or raw.lower() in ("false", "0", ""):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise ApiError(400, "bad_request", f"'{name}' must be true or false, got {raw!r}")


async def _read_limited(request: Request, limit: int, kind: str) -> bytes:
    """The body, refused with 413 as soon as it is over ``limit`` bytes (never read whole)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        metrics.INGEST_REJECTED.labels(kind, "too_large").inc()
        raise ApiError(413, "too_large", f"body is {declared} bytes, the limit is {limit}")
    body = bytearray()
    while True:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            metrics.INGEST_REJECTED.labels(kind, "too_large").inc()
            raise ApiError(413, "too_large", f"body is over the limit of {limit} bytes")


def _int_arg(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"'{name}' must be an integer, got {raw!r}")
    if not lo <= value <= hi:
        raise ApiError(400, "bad_request", f"'{name}' must be within {lo}..{hi}, got {value}")
    return value


def _list_arg(request: Request, name: str) -> tuple[str, ...]:
    values: list[str] = []
    for raw in request.query.getall(name, []):
        values += [v for v in raw.split(",") if v]
    return tuple(values)


class OwnerLookup:
    """Which worker's web server owns a user: Faust's ``router.key_store`` without its layers.

    Faust's path (table, topic and key serializer lookups, the producer's partitioner over
    cluster metadata, a URL per call) was a twentieth of a recommendation request's time. The
    partition is the contract's murmur2 of the raw key, the owner comes from the assignor's
    table of changelog partitions to web URLs (rebuilt by Faust at each rebalance).
    """

    def __init__(self, app: Any, table: TableT, n_partitions: Optional[int]) -> None:
        if not n_partitions:
            raise ValueError(f"table {table.name} must declare its partition count")
        self._app = app
        self._table = table
        self._n = n_partitions
        self._topic: Optional[str] = None
        self._idents: dict[str, tuple[Optional[str], Optional[int]]] = {}

    def owner(self, user_id: str) -> tuple[Optional[str], Optional[int]]:
        """(host, port) of the owner's web server; KeyError while no owner is known."""
        tps_url = owner_url_of(self._app)
        if tps_url is None:  # another assignor: Faust's own lookup
            url = self._app.router.key_store(self._table.name, user_id)
            return url.host, url.port
        if self._topic is None:
            self._topic = self._table.changelog_topic.get_topic_name()
        url_text = tps_url[TP(self._topic, user_partition(user_id, self._n))]
        ident = self._idents.get(url_text)
        if ident is None:
            url = URL(url_text)
            ident = self._idents[url_text] = (url.host, url.port)
        return ident



class ApiView(View):
    """JSON errors ({error, detail}) for everything, never a stack trace; the worker's state
    through ``self.ctx`` (the app's ``web_context``), not through closures."""

    #: The token scope of the route (web/auth.py); None: open.
    scope: Optional[str] = None

    @property
    def ctx(self) -> "WebContext":
        return self.app.web_context

    #: The route template (set by ``mount``): the latency histogram's label, never the raw path.
    route: str = ""

    async def dispatch(self, request: Any) -> Any:
        started = time.perf_counter()
        response = await self._dispatch(request)
        metrics.HTTP_SECONDS.labels(self.route, request.method, str(response.status)).observe(
            time.perf_counter() - started)
        return response

    def address(self, request: Any) -> str:
        return client_address(request.remote, request.headers.get("X-Forwarded-For", ""), self.ctx.trusted_proxies)

    def from_a_worker(self, request: Any) -> bool:
        """Forwarded by a worker of this cluster (web/forwarding.py), not just claiming to be."""
        return bool(request.headers.get(FORWARDED)) and forwarding.verified(
            self.ctx.forward_secret, request.headers.get(forwarding.PROOF), request.method, request.path_qs)

    def _limited(self, wait: float, what: str) -> Any:
        metrics.RATE_LIMITED.labels(self.scope or "").inc()
        return self.json({"error": "rate_limited", "detail": f"{what}; retry in {wait:.1f} s"},
                         status=429, headers={"Retry-After": retry_after_header(wait)})

    async def _dispatch(self, request: Any) -> Any:
        if request.method.lower() not in self.methods:
            return self.json({"error": "method_not_allowed", "detail": request.method}, status=405)
        failures = self.ctx.failures if self.scope is not None else None
        try:
            if failures is not None:
                wait = failures.waiting(self.address(request))
                if wait is not None:  # this address failed too often: not even checked
                    return self._limited(wait, "too many failed authentications")
            if self.scope is not None:
                auth.check(self.ctx.settings, request.headers, self.scope)
            limiter = self.ctx.limiter
            if limiter is not None and self.scope in ("read", "ingest") and not self.from_a_worker(request):
                wait = limiter.take(client_key(auth.bearer(request.headers), self.address(request)))
                if wait is not None:
                    return self._limited(wait, f"over {self.ctx.settings.web.rate_limit_rps:g} requests/s")
            return await super().dispatch(request)
        except auth.AuthError as exc:
            metrics.AUTH_REFUSED.labels(self.scope or "", str(exc.status)).inc()
            if failures is not None:
                failures.take(self.address(request))
            return self.json({"error": exc.error, "detail": exc.detail}, status=exc.status)
        except ApiError as exc:
            return self.json({"error": exc.error, "detail": exc.detail}, status=exc.status)
        except Exception as exc:  # noqa: BLE001 - the client gets a reason, the log the trace
            log.exception("error serving %s %s", request.method, request.path)
            return self.json({"error": "internal", "detail": type(exc).__name__}, status=500)

    async def owner_response(self, request: Request, user_id: str) -> Optional[Response]:
        """The owning worker's response, or None when this worker should answer."""
        if request.headers.get(FORWARDED):
            return None
        try:
            host, port = self.ctx.owners.owner(user_id)
        except KeyError:
            raise ApiError(503, "unavailable", "partition assignment in progress; retry shortly")
        if (host, port) == self.ctx.self_ident:
            return None
        dest = f"{host}:{port}"
        url = request.url.with_host(host).with_port(port)
        try:
            async with self.app.http_client.get(  # Faust's own session, closed with the app
                url, headers={FORWARDED: self.ctx.settings.web.web_url,  # the caller's credentials go along
                              **({forwarding.PROOF: forwarding.proof(self.ctx.forward_secret, request.method,
                                                                     request.path_qs)}
                                 if self.ctx.forward_secret else {}),
                              **({"Authorization": request.headers["Authorization"]}
                                 if "Authorization" in request.headers else {})},
                timeout=aiohttp.ClientTimeout(total=self.ctx.settings.web.forward_timeout_s)
            ) as resp:
                body = await resp.read()
                return self.bytes(body, content_type=resp.content_type, status=resp.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ApiError(503, "owner_unreachable", f"worker {dest} did not answer: {type(exc).__name__}")

class Ping(ApiView):
    """A constant answer: liveness, and the serving benchmark's baseline."""

    async def get(self, request: Request) -> Response:
        return self.json({"ok": True})

class Live(ApiView):
    """The process answers: what a restart policy asks (never the broker's or the tables' state)."""

    async def get(self, request: Request) -> Response:
        return self.json({"live": True, "worker": self.ctx.settings.process.worker_name})


class Ready(ApiView):
    """200 when this worker can answer for its users now, else 503 with the reasons
    (worker/readiness.py): what a load balancer and the image's HEALTHCHECK ask."""

    async def get(self, request: Request) -> Response:
        reasons = self.ctx.readiness()
        return self.json({"ready": not reasons, "reasons": reasons, "worker": self.ctx.settings.process.worker_name},
                         status=503 if reasons else 200)


class Health(ApiView):
    """The full document to a caller with the admin or metrics token (or while the metrics scope
    is open), with readiness's status code; to anyone else the status alone: the document names
    the broker, database errors and which scopes are open."""

    async def get(self, request: Request) -> Response:
        body = await self.ctx.health()
        status = 200 if body["ready"]["ready"] else 503
        if not self._may_see_all(request):
            return self.json({"ready": body["ready"]["ready"], "worker": self.ctx.settings.process.worker_name,
                              "detail": "the full document needs the admin or metrics token"}, status=status)
        return self.json(body, status=status)

    def _may_see_all(self, request: Request) -> bool:
        for scope in ("metrics", "admin"):
            try:
                auth.check(self.ctx.settings, request.headers, scope)
                return True
            except auth.AuthError:
                continue
        return False


#: Why a recommendation may be answered by a worker that does not own the user: its owner did not
#: answer in ``forward_timeout_s``, or partitions are being assigned. (An owner rebuilding the
#: tables of partitions it took over answers itself, marked ``recovering``.)
DEGRADES = ("owner_unreachable", "unavailable")


class Recommendations(ApiView):
    scope = "read"

    async def get(self, request: Request, user_id: str) -> Response:
        k = _int_arg(request, "k", 10, 1, 100)
        category = request.query.get("category") or None
        exclude = _list_arg(request, "exclude")
        explain = _bool_arg(request, "explain")
        try:
            routed = await self.owner_response(request, user_id)
        except ApiError as exc:
            if exc.error not in DEGRADES:
                raise
            # The owner is stopped, unreachable or being moved: popular items now beat a 5xx
            # (not folded as served: the owner keeps the user's online figures).
            metrics.DEGRADED_ANSWERS.labels(exc.error).inc()
            result = self.ctx.recommender.fallback(user_id, k, exc.error, category=category, exclude=exclude)
            return self.bytes(orjson.dumps(result), content_type="application/json")
        if routed is not None:
            return routed
        result, stale = self.ctx.recommender.answer(user_id, k, category=category, exclude=exclude)
        if explain:
            self.ctx.recommender.explain(user_id, result)
        if self.ctx.recovering():
            # After a rebalance this worker serves while it rebuilds the tables of the partitions
            # it took over: the user's state may be incomplete for a few seconds.
            result["degraded"] = "recovering"
            metrics.DEGRADED_ANSWERS.labels("recovering").inc()
        metrics.HTTP_RECOMMENDATIONS.labels(result["strategy"]).inc()
        if self.ctx.served is not None:
            await self.ctx.served(user_id, result, "http", stale)
        return self.bytes(orjson.dumps(result), content_type="application/json")


class Profile(ApiView):
    scope = "read"

    async def get(self, request: Request, user_id: str) -> Response:
        routed = await self.owner_response(request, user_id)
        if routed is not None:
            return routed
        profile = self.ctx.profiles.get(user_id)
        if profile is None:
            raise ApiError(404, "not_found", f"no events seen for user '{user_id}'")
        return self.json(profile_view(profile, self.ctx.profile_config))

class User(ApiView):
    """``DELETE``: erase the user everywhere (erasure/): one record on recsys-erasures, applied by
    the user's owner in order with their events and by the sink; answered once it is on Kafka."""

    scope = "admin"

    async def delete(self, request: Request, user_id: str) -> Response:
        erased_at = time.time()
        try:
            topic, key, value = prepare_erasure(user_id, erased_at, f"http:{self.address(request)}")
        except InvalidEventError as exc:
            raise ApiError(400, exc.invalid.code, exc.invalid.detail)
        fut = await self.ctx.topics[topic].send(key=key, value=value)
        await fut
        return self.json({"user_id": user_id, "erased_at": erased_at, "topic": topic,
                          "detail": "the user's state, rows and later-read old records are removed as the "
                                    "erasure is applied (docs/erasure.md)"}, status=202)

class ActiveUsers(ApiView):
    """Users whose profiles this worker changed last (its own partitions, newest first): a
    starting point to explore, as the demo page's picker does; not a directory of users."""

    scope = "read"

    async def get(self, request: Request) -> Response:
        k = _int_arg(request, "k", 20, 1, 100)
        return self.json({"users": self.ctx.active_users(k), "worker": self.ctx.settings.process.worker_name})


class Trending(ApiView):
    scope = "read"

    async def get(self, request: Request) -> Response:
        k = _int_arg(request, "k", 10, 1, 100)
        return self.json(self.ctx.recommender.trending(k, request.query.get("category") or None))

class Ingest(ApiView):
    scope = "ingest"

    async def post(self, request: Request, kind: str) -> Response:
        if kind not in KIND_TOPICS:
            raise ApiError(404, "unknown_kind", f"kind must be one of {sorted(KIND_TOPICS)}")
        raw = await _read_limited(request, self.ctx.settings.ingest.max_event_bytes, kind)
        try:
            obj = strict_json.loads(raw)
        except strict_json.JsonRefused as exc:
            metrics.INGEST_REJECTED.labels(kind, exc.code).inc()
            raise ApiError(400, exc.code, exc.detail)
        if not isinstance(obj, dict):
            metrics.INGEST_REJECTED.labels(kind, "not_object").inc()
            raise ApiError(400, "not_object", "body must be a JSON object")
        # HTTP callers rarely mint ids or clocks: fill those two, validate everything else.
        obj.setdefault("event_id", new_id())
        obj.setdefault("timestamp", time.time())
        try:
            topic, key, value = prepare(kind, obj, max_bytes=self.ctx.settings.ingest.max_event_bytes, cipher=self.ctx.cipher)
        except InvalidEventError as exc:
            metrics.INGEST_REJECTED.labels(kind, exc.invalid.code).inc()
            raise ApiError(400, exc.invalid.code, exc.invalid.detail)
        fut = await self.ctx.topics[topic].send(key=key, value=value)
        await fut
        metrics.INGESTED.labels(kind).inc()
        return self.json({"accepted": True, "event_id": obj["event_id"], "topic": topic}, status=202)

class Similar(ApiView):
    scope = "read"

    async def get(self, request: Request, product_id: str) -> Response:
        k = _int_arg(request, "k", 10, 1, 100)
        kind = request.query.get("kind") or "factors"
        if kind not in SIMILAR_KINDS:
            raise ApiError(400, "bad_request", f"'kind' must be one of {', '.join(SIMILAR_KINDS)}, got {kind!r}")
        try:
            found = self.ctx.recommender.similar(product_id, k, kind)
        except LookupError as exc:
            raise ApiError(503, "no_model", str(exc))
        if found is None:
            where = "the transitions" if kind == "next" else f"model {self.ctx.recommender.model_version}"
            raise ApiError(404, "not_found", f"product '{product_id}' is not known to {where}")
        return self.json({"product_id": product_id, "kind": kind, **found})

class Product(ApiView):
    """A product's catalogue rule (catalogue/rules.py): ``PUT`` sets it on recsys-catalogue (every
    worker applies it to every answer once read), ``GET`` shows the rule this worker holds."""

    scope = "admin"

    async def get(self, request: Request, product_id: str) -> Response:
        rule = self.ctx.recommender.rules.get(product_id)
        if rule is None:
            raise ApiError(404, "not_found", f"no catalogue rule for product '{product_id}'")
        return self.json(rule.as_record())

    async def put(self, request: Request, product_id: str) -> Response:
        raw = await _read_limited(request, self.ctx.settings.ingest.max_event_bytes, "catalogue")
        try:
            obj = strict_json.loads(raw)
        except strict_json.JsonRefused as exc:
            raise ApiError(400, exc.code, exc.detail)
        rule = parse_rule(obj, product_id)
        if isinstance(rule, Invalid):
            raise ApiError(400, rule.code, rule.detail)
        fut = await self.ctx.topics[TOPIC_CATALOGUE].send(key=product_id.encode("utf-8"),
                                                          value=orjson.dumps(rule.as_record()))
        await fut
        return self.json({**rule.as_record(), "topic": TOPIC_CATALOGUE}, status=202)

class ReloadModels(ApiView):
    """Publish the newest artifact under RECSYS_MODELS_DIR on amazon-model-updates: this worker
    switches at once, every other one when its tail reads the announcement (ranking/model/registry.py),
    and a worker restarted later comes back on it."""

    scope = "admin"

    async def post(self, request: Request) -> Response:
        from ..ranking.model.artifact import latest, load

        path = latest(self.ctx.settings.training.models_dir)
        if path is None:
            raise ApiError(404, "not_found", f"no model under {self.ctx.settings.training.models_dir}")
        loop = asyncio.get_running_loop()
        # mapped, as a model announced by reference is: shared with the scoring process
        artifact = await loop.run_in_executor(None, functools.partial(load, path, mmap=True))
        # read before publishing: this worker's own tail may read the announcement and switch
        # while the publish awaits its acknowledgement, and that switch is still this call's doing
        before = self.ctx.models.active
        switched = before is None or before.version != artifact.version
        published = False
        if self.ctx.publish_model is not None:
            try:
                await self.ctx.publish_model(artifact)
            except Exception as exc:  # noqa: BLE001 - the caller gets the reason
                raise ApiError(503, "unavailable", f"could not publish {artifact.version}: {type(exc).__name__}: {exc}")
            published = True
        active = self.ctx.models.active
        if active is None or active.version != artifact.version:  # off the event loop: a large
            # model's fold-in matrices take seconds
            await loop.run_in_executor(None, self.ctx.models.switch, artifact,
                                       float(artifact.manifest.get("created_at") or 0))
        return self.json({"model_version": artifact.version, "switched": switched, "published": published})

class Models(ApiView):
    """The versions on amazon-model-updates, newest first, with their offline figures and which
    one every worker serves (ranking/model/registry.py), this worker's online figures per version
    (online/), and the A/B variants with theirs."""

    scope = "read"

    async def get(self, request: Request) -> Response:
        online = self.ctx.online()
        versions = self.ctx.models_summary()
        for v in versions:  # offline (manifest) and online figures side by side
            v["online"] = [r for r in online if r["model_version"] == v["model_version"]]
        variants = self.ctx.recommender.ranker.variants
        return self.json({"model_version": self.ctx.recommender.model_version, "versions": versions,
                          "variants": [{"name": x.name, "spec": x.spec, "weight": x.weight,
                                        "online": [r for r in online if r["variant"] == x.name]} for x in variants],
                          "online": online})


class ClearCache(ApiView):
    scope = "admin"

    async def post(self, request: Request) -> Response:
        if self.ctx.clear_cache is None:
            raise ApiError(503, "unavailable", "this worker has no cache control")
        return self.json(await self.ctx.clear_cache())

class Metrics(ApiView):
    scope = "metrics"

    async def get(self, request: Request) -> Response:
        metrics.POPULAR_ITEMS.set(len(self.ctx.index))
        body, content_type = metrics.exposition(request.query.getall("name[]", []))
        return self.bytes(body, content_type=content_type.split(";")[0])


class Demo(ApiView):
    async def get(self, request: Request) -> Response:
        return self.html(_demo_html())


class OpenAPI(ApiView):
    """The OpenAPI 3 description of ``ROUTES`` (web/openapi.py), built once."""

    async def get(self, request: Request) -> Response:
        return self.json(_openapi_document())


@lru_cache(maxsize=1)
def _openapi_document() -> dict[str, Any]:
    from .openapi import document

    return document(ROUTES)


@lru_cache(maxsize=1)
def _demo_html() -> str:
    return resources.files("recsys_faust.web").joinpath("index.html").read_text("utf-8")


#: The routes, in one table: path -> view.
ROUTES: tuple[tuple[str, type[ApiView]], ...] = (
    ("/api/ping", Ping),
    ("/api/health", Health),
    ("/api/health/live", Live),
    ("/api/health/ready", Ready),
    ("/api/recommendations/{user_id}", Recommendations),
    ("/api/users/active", ActiveUsers),
    ("/api/users/{user_id}/profile", Profile),
    ("/api/users/{user_id}", User),
    ("/api/trending", Trending),
    ("/api/events/{kind}", Ingest),
    ("/api/products/{product_id}/similar", Similar),
    ("/api/products/{product_id}", Product),
    ("/api/models", Models),
    ("/api/reload-models", ReloadModels),
    ("/api/clear-cache", ClearCache),
    ("/metrics", Metrics),
    ("/api/openapi.json", OpenAPI),
    ("/", Demo),
)


def register_views(app: Any, ctx: WebContext) -> None:
    """Attach the worker's state to the app and mount every route of ``ROUTES``."""
    url = URL(ctx.settings.web.web_url)
    ctx.self_ident = (url.host, url.port)
    ctx.owners = OwnerLookup(app, ctx.profiles, ctx.profiles.partitions)
    mount(app, ctx)


_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


@aiohttp.web.middleware
async def json_errors(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
    """aiohttp's own refusals (no such route, a method the route lacks) as ``{error, detail}``
    like every view's, instead of its text/plain pages."""
    try:
        return await handler(request)
    except aiohttp.web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return aiohttp.web.json_response(
            {"error": _ERROR_CODES.get(exc.status, "http_error"), "detail": f"{request.method} {request.path}: {exc.reason}"},
            status=exc.status, headers=headers)


def mount(app: Any, ctx: WebContext) -> None:
    """The routes over ``ctx`` as it is (its owner lookup already set): the worker's last step,
    and how the views' unit tests serve them without a broker."""
    app.web.web_app.middlewares.append(json_errors)
    s = ctx.settings
    ctx.profile_config = ProfileConfig.from_settings(s)
    ctx.cipher = FieldCipher.from_settings(s)
    if s.web.rate_limit_rps > 0:
        ctx.limiter = TokenBuckets(s.web.rate_limit_rps, s.web.rate_limit_burst or math.ceil(s.web.rate_limit_rps))
    ctx.failures = TokenBuckets(s.web.auth_failure_rps, s.web.auth_failure_burst)
    ctx.trusted_proxies = trusted_networks(s.web.trusted_proxies)
    secret = s.secret("forward_secret")
    ctx.forward_secret = secret.encode("utf-8") if secret else None
    app.web_context = ctx
    for path, view in ROUTES:
        view.route = path
        app.page(path)(view)
