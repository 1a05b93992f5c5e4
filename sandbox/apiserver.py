"""The Kubernetes API over HTTP: an aiohttp application in front of :class:`Cluster`.

Request flow, as in kube-apiserver: authentication (bearer token -> user, 401
otherwise) -> URL parsing into a resource request -> RBAC authorization (403
``Status``) -> the handler for the verb -> :class:`Cluster`. Every failure is
an :class:`ApiError` rendered as a metav1 ``Status``.

Served: ``/version``, ``/healthz``/``/livez``/``/readyz``, discovery
(``/api``, ``/apis``, ``/api/v1``, ``/apis/G``, ``/apis/G/V``), OpenAPI v3
(``/openapi/v3``, ``/openapi/v3/api/v1``, ``/openapi/v3/apis/G/V``), and for
every resource get/list/watch/create/update/patch/delete/deletecollection,
the ``status`` and ``scale`` subresources, and ``pods/log`` and
``pods/portforward`` through the kubelet when one is attached.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from sandbox import discovery
from sandbox.apirequest import (
    ListOptions,
    ResourceRequest,
    decode_continue,
    dry_run,
    encode_continue,
    parse_path,
    read_json,
)
from sandbox.auth import SYSTEM, UserInfo
from sandbox.cluster import Cluster
from sandbox.errors import ApiError, bad_request
from sandbox.fieldcheck import check_fields
from sandbox.impersonation import impersonate
from sandbox.patch import PATCH_TYPES
from sandbox.podproxy import LogSource, serve_pod_subresource
from sandbox.rbac import Forbidden, ResourceAuthorizer
from sandbox.selectors import FieldSelector, LabelSelector
from sandbox.tables import table, wants_table
from sandbox.watchstream import serve_watch

__all__ = ["USER", "ApiServer", "Authenticator", "Authorizer", "LogSource"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

USER: web.RequestKey[UserInfo] = web.RequestKey("user", UserInfo)
"""The authenticated caller of a request."""

_PUBLIC = {"/healthz", "/livez", "/readyz"}
_RETURNS_OBJECT_ON_DELETE = {"pods", "services", "serviceaccounts"}
"""Resources whose DELETE answers with the object (per the real API), not a Status."""


class Authenticator(Protocol):
    def authenticate(self, header: str | None) -> UserInfo | None: ...


class Authorizer(ResourceAuthorizer, Protocol):
    def authorize_non_resource(
        self, user: UserInfo, *, verb: str, path: str
    ) -> tuple[bool, str]: ...


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _warn(response: web.Response, warnings: list[str]) -> web.Response:
    """Add ``Warning: 299`` headers, which kubectl prints."""
    for text in warnings:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.add("Warning", f'299 - "{escaped}"')
    return response


def _status_success(rr: ResourceRequest, obj: Obj) -> Obj:
    details: Obj = {"name": obj["metadata"]["name"], "kind": rr.rt.plural}
    if rr.rt.group:
        details["group"] = rr.rt.group
    if obj["metadata"].get("uid"):
        details["uid"] = obj["metadata"]["uid"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


class ApiServer:
    """Builds the aiohttp application. Hooks left as None are skipped (everyone is SYSTEM)."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
        kubelet: LogSource | None = None,
        bookmark_interval: float = 60.0,
    ) -> None:
        self.cluster = cluster
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.kubelet = kubelet
        self.bookmark_interval = bookmark_interval
        self.closing = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=16 * 1024 * 1024)
        app.router.add_get("/version", self._version)
        app.router.add_get("/version/", self._version)
        for path in _PUBLIC:
            app.router.add_get(path, self._health)
        app.router.add_get("/api", self._api)
        app.router.add_get("/api/", self._api)
        app.router.add_get("/apis", self._apis)
        app.router.add_get("/apis/", self._apis)
        app.router.add_get("/openapi/v3", self._openapi_index)
        app.router.add_get("/openapi/v3/", self._openapi_index)
        app.router.add_get("/openapi/v3/api/{version}", self._openapi_core)
        app.router.add_get("/openapi/v3/apis/{group}/{version}", self._openapi_group)
        app.router.add_route("*", "/api/{tail:.*}", self._resource)
        app.router.add_route("*", "/apis/{tail:.*}", self._resource)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self.closing.set()

    # -- middleware ----------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path not in _PUBLIC:
                request[USER] = self._authenticate(request)
            return await handler(request)
        except ApiError as exc:
            return _json(exc.status(), exc.code)
        except web.HTTPException as exc:
            if exc.status_code == 404:
                return _json(
                    ApiError(
                        404, "NotFound", "the server could not find the requested resource"
                    ).status(),
                    404,
                )
            if exc.status_code == 405:
                return _json(
                    ApiError(
                        405, "MethodNotAllowed", f"method {request.method} is not allowed here"
                    ).status(),
                    405,
                )
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error serving %s %s", request.method, request.path)
            err = ApiError(500, "InternalError", f"Internal error occurred: {exc!r}")
            return _json(err.status(), 500)

    def _authenticate(self, request: web.Request) -> UserInfo:
        if self.authenticator is None:
            return SYSTEM
        user = self.authenticator.authenticate(request.headers.get("Authorization"))
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        groups = list(request.headers.getall("Impersonate-Group", []))
        return impersonate(user, request.headers, groups, self.authorizer)

    def _authorize_path(self, request: web.Request) -> None:
        if self.authorizer is None:
            return
        user = request[USER]
        allowed, _ = self.authorizer.authorize_non_resource(user, verb="get", path=request.path)
        if not allowed:
            raise Forbidden(user, "get", path=request.path).error()

    # -- non-resource endpoints ------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.Response:
        self._authorize_path(request)
        return _json(discovery.version_info())

    async def _api(self, request: web.Request) -> web.Response:
        self._authorize_path(request)
        return _json(discovery.api_versions(request.host))

    async def _apis(self, request: web.Request) -> web.Response:
        self._authorize_path(request)
        return _json(discovery.api_group_list())

    async def _openapi_index(self, request: web.Request) -> web.Response:
        self._authorize_path(request)
        return _json(discovery.openapi_v3_index())

    async def _openapi_core(self, request: web.Request) -> web.Response:
        self._authorize_path(request)
        return _json(discovery.openapi_v3_document("", request.match_info["version"]))

    async def _openapi_group(self, request: web.Request) -> web.Response:
        self._authorize_path(request)
        info = request.match_info
        return _json(discovery.openapi_v3_document(info["group"], info["version"]))

    # -- resources -------------------------------------------------------------

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET":
            if parts[0] == "api" and len(parts) == 2:
                self._authorize_path(request)
                return _json(discovery.resource_list("", parts[1]))
            if parts[0] == "apis" and len(parts) == 2:
                self._authorize_path(request)
                return _json(discovery.api_group(parts[1]))
            if parts[0] == "apis" and len(parts) == 3:
                self._authorize_path(request)
                return _json(discovery.resource_list(parts[1], parts[2]))
        rr = parse_path(request.method, request.path, dict(request.query))
        self._authorize(request, rr)
        if rr.subresource in ("log", "portforward"):
            assert rr.namespace is not None and rr.name is not None
            pod = self.cluster.get("pods", rr.namespace, rr.name)
            return await serve_pod_subresource(
                request, self.kubelet, pod, rr.subresource, closing=self.closing
            )
        handlers: dict[
            str, Callable[[web.Request, ResourceRequest], Awaitable[web.StreamResponse]]
        ] = {
            "get": self._get,
            "list": self._list,
            "watch": self._watch,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
            "deletecollection": self._delete_collection,
        }
        return await handlers[rr.verb](request, rr)

    def _authorize(self, request: web.Request, rr: ResourceRequest) -> None:
        if self.authorizer is None:
            return
        user = request[USER]
        allowed, _ = self.authorizer.authorize(
            user,
            verb=rr.verb,
            api_group=rr.rt.group,
            resource=rr.rt.plural,
            subresource=rr.subresource,
            namespace=rr.namespace,
            name=rr.name,
        )
        if not allowed:
            raise Forbidden(
                user, rr.verb, rr.rt.group, rr.rt.plural, rr.subresource, rr.namespace, rr.name
            ).error()

    async def _get(self, request: web.Request, rr: ResourceRequest) -> web.Response:
        assert rr.name is not None
        if rr.subresource == "scale":
            return _json(self.cluster.scale(rr.rt.key, rr.namespace, rr.name))
        obj = self.cluster.get(rr.rt.key, rr.namespace, rr.name)
        as_table = wants_table(request.headers.get("Accept", ""))
        if as_table and not rr.subresource:
            meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            return _json(table(rr.rt, [obj], as_table, meta))
        return _json(obj)

    def _select(self, rr: ResourceRequest, options: ListOptions) -> list[Obj]:
        labels = LabelSelector(options.label_selector)
        fields = FieldSelector(options.field_selector)
        return [
            obj
            for obj in self.cluster.store.list(rr.rt.key, rr.namespace)
            if labels.matches(obj) and fields.matches(obj)
        ]

    async def _list(self, request: web.Request, rr: ResourceRequest) -> web.Response:
        options = ListOptions.from_query(request.query)
        items = self._select(rr, options)
        meta: Obj = {"resourceVersion": str(self.cluster.store.revision)}
        if options.continue_token:
            after = decode_continue(options.continue_token)
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace") or "", o["metadata"]["name"]) > after
            ]
        if options.limit and len(items) > options.limit:
            remaining = len(items) - options.limit
            items = items[: options.limit]
            last = items[-1]["metadata"]
            meta["continue"] = encode_continue(last.get("namespace") or "", last["name"])
            meta["remainingItemCount"] = remaining
        as_table = wants_table(request.headers.get("Accept", ""))
        if as_table:
            return _json(table(rr.rt, items, as_table, meta))
        return _json(
            {
                "kind": rr.rt.list_kind,
                "apiVersion": rr.rt.api_version,
                "metadata": meta,
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, rr: ResourceRequest) -> web.StreamResponse:
        return await serve_watch(
            request,
            self.cluster,
            rr.rt,
            rr.namespace,
            ListOptions.from_query(request.query),
            closing=self.closing,
            bookmark_interval=self.bookmark_interval,
            as_table=wants_table(request.headers.get("Accept", "")),
        )

    async def _body(self, request: web.Request) -> Obj:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        return body

    @staticmethod
    def _check_fields(request: web.Request, rr: ResourceRequest, body: Any) -> list[str]:
        return check_fields(rr.rt, body, request.query.get("fieldValidation", ""))

    async def _create(self, request: web.Request, rr: ResourceRequest) -> web.Response:
        if rr.name is not None:
            raise ApiError(405, "MethodNotAllowed", "POST is only allowed on a collection")
        body = await self._body(request)
        warnings = self._check_fields(request, rr, body)
        created = await self.cluster.create(
            rr.rt.key,
            body,
            namespace=rr.namespace,
            user=request[USER],
            dry_run=dry_run(request.query),
        )
        return _warn(_json(created, 201), warnings)

    async def _update(self, request: web.Request, rr: ResourceRequest) -> web.Response:
        assert rr.name is not None
        body = await self._body(request)
        meta = body.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != rr.name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({rr.name})"
            )
        if rr.namespace and meta.get("namespace") and meta["namespace"] != rr.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["name"] = rr.name
        if rr.namespace:
            meta["namespace"] = rr.namespace
        warnings = [] if rr.subresource == "scale" else self._check_fields(request, rr, body)
        updated = await self.cluster.update(
            rr.rt.key,
            body,
            subresource=rr.subresource or None,
            user=request[USER],
            dry_run=dry_run(request.query),
        )
        if rr.subresource == "scale":
            return _json(self.cluster.scale(rr.rt.key, rr.namespace, rr.name))
        return _warn(_json(updated), warnings)

    async def _patch(self, request: web.Request, rr: ResourceRequest) -> web.Response:
        assert rr.name is not None
        patch_type = PATCH_TYPES.get(request.content_type)
        if patch_type is None:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format ({request.content_type}); "
                f"accepted: {', '.join(PATCH_TYPES)}",
            )
        body = await read_json(request)
        checked = patch_type != "json" and rr.subresource != "scale"
        warnings = self._check_fields(request, rr, body) if checked else []
        existed = self.cluster.store.get(rr.rt.key, rr.namespace, rr.name) is not None
        patched = await self.cluster.patch(
            rr.rt.key,
            rr.namespace,
            rr.name,
            body,
            patch_type=patch_type,
            subresource=rr.subresource or None,
            user=request[USER],
            dry_run=dry_run(request.query),
        )
        if rr.subresource == "scale":
            return _json(self.cluster.scale(rr.rt.key, rr.namespace, rr.name))
        return _warn(_json(patched, 200 if existed else 201), warnings)

    async def _delete_options(self, request: web.Request) -> Obj:
        if not request.can_read_body:
            return {}
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"the DeleteOptions body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            raise bad_request("the DeleteOptions body must be a JSON object")
        return body

    def _propagation(self, request: web.Request, options: Obj) -> str:
        policy = options.get("propagationPolicy") or request.query.get("propagationPolicy")
        if policy:
            return str(policy)
        orphan = options.get("orphanDependents")
        if orphan is None and "orphanDependents" in request.query:
            orphan = request.query["orphanDependents"] == "true"
        return "Orphan" if orphan else "Background"

    @staticmethod
    def _grace(request: web.Request, options: Obj) -> int | None:
        value = options.get("gracePeriodSeconds", request.query.get("gracePeriodSeconds"))
        if value in (None, ""):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"gracePeriodSeconds: invalid value {value!r}: must be an integer")

    async def _delete(self, request: web.Request, rr: ResourceRequest) -> web.Response:
        assert rr.name is not None
        options = await self._delete_options(request)
        result = await self.cluster.delete(
            rr.rt.key,
            rr.namespace,
            rr.name,
            propagation=self._propagation(request, options),
            user=request[USER],
            dry_run=dry_run(request.query, options),
            preconditions=options.get("preconditions"),
            grace_period_seconds=self._grace(request, options),
        )
        still_there = self.cluster.store.get(rr.rt.key, rr.namespace, rr.name) is not None
        if still_there or rr.rt.key in _RETURNS_OBJECT_ON_DELETE:
            return _json(result)
        return _json(_status_success(rr, result))

    async def _delete_collection(self, request: web.Request, rr: ResourceRequest) -> web.Response:
        options = await self._delete_options(request)
        propagation = self._propagation(request, options)
        dry = dry_run(request.query, options)
        for obj in self._select(rr, ListOptions.from_query(request.query)):
            try:
                await self.cluster.delete(
                    rr.rt.key,
                    obj["metadata"].get("namespace"),
                    obj["metadata"]["name"],
                    propagation=propagation,
                    user=request[USER],
                    dry_run=dry,
                    grace_period_seconds=self._grace(request, options),
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
