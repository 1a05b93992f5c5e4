"""The Kubernetes access layer: the only module in ``core`` that imports ``kubernetes``.

A small, synchronous, dict-based API over the official client's transport
(``ApiClient.param_serialize`` + ``call_api``): no generated models, so nothing
above this module ever sees a ``V1Pod``. Every call has a bounded
``_request_timeout``; every failure leaves as a ``core.errors`` exception
(``map_exceptions``). Async callers run these methods in a worker thread
(``anyio.to_thread.run_sync(..., abandon_on_cancel=True)``).

Resources are named by ``api_version`` (``"v1"``, ``"apps/v1"``) and a kind or
plural (``"Deployment"``, ``"deployments"``); common ones resolve from a
built-in table, others through API discovery (cached per group-version).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.stream import portforward as k8s_portforward

from core import config as kubeconfig
from core.errors import (
    ClusterError,
    ContextUnreachable,
    KubeApiError,
    NoKubeconfig,
    RbacDenied,
)
from core.models import ContextInfo

__all__ = [
    "DEFAULT_TIMEOUT",
    "Kube",
    "PatchType",
    "PortForward",
    "Resource",
    "WatchEvent",
    "Watcher",
    "map_exceptions",
]

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
"""(connect, read) seconds for every non-watch request."""

PatchType = Literal["merge", "strategic", "json", "apply"]

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def display(self) -> str:
        """``deployments.apps`` / ``pods``: how RBAC and kubectl name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
        return base


def _builtin(api_version: str, kind: str, plural: str, namespaced: bool = True) -> Resource:
    group, _, version = api_version.rpartition("/")
    return Resource(group, version, plural, kind, namespaced)


_BUILTIN: list[Resource] = [
    _builtin("v1", "Pod", "pods"),
    _builtin("v1", "Service", "services"),
    _builtin("v1", "Endpoints", "endpoints"),
    _builtin("v1", "ConfigMap", "configmaps"),
    _builtin("v1", "Secret", "secrets"),
    _builtin("v1", "ServiceAccount", "serviceaccounts"),
    _builtin("v1", "Event", "events"),
    _builtin("v1", "Namespace", "namespaces", False),
    _builtin("apps/v1", "Deployment", "deployments"),
    _builtin("apps/v1", "ReplicaSet", "replicasets"),
    _builtin("apps/v1", "StatefulSet", "statefulsets"),
    _builtin("rbac.authorization.k8s.io/v1", "Role", "roles"),
    _builtin("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    _builtin("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    _builtin("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _builtin(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
    ),
]


@dataclass
class WatchEvent:
    """One change seen by a watch.

    ``type`` is ADDED, MODIFIED or DELETED with ``object`` set, or RELISTED
    (the watch had to list again: ``objects`` is the complete current set).
    """

    type: Literal["ADDED", "MODIFIED", "DELETED", "RELISTED"]
    object: dict[str, Any] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------ errors


@contextlib.contextmanager
def map_exceptions(
    kube: Kube, verb: str = "", resource: str = "", namespace: str | None = None
) -> Iterator[None]:
    """Translate transport and client exceptions into ``core.errors``."""
    try:
        yield
    except ClusterError:
        raise
    except k8s_config.ConfigException as exc:
        raise NoKubeconfig([f"{kube.kubeconfig_path}: {exc}"])
    except k8s_client.ApiException as exc:
        raise _status_error(
            kube, exc.status or 0, str(exc.reason), str(exc.body or ""), verb, resource, namespace
        )
    except (urllib3.exceptions.HTTPError, ssl.SSLError, OSError) as exc:
        raise ContextUnreachable(kube.context.name, kube.context.server, _reason(exc))


def _reason(exc: BaseException) -> str:
    inner: BaseException | None = getattr(exc, "reason", None)
    if isinstance(inner, BaseException):
        return _reason(inner)
    return f"{type(exc).__name__}: {exc}"


def _status_error(
    kube: Kube,
    status: int,
    reason: str,
    body: str,
    verb: str,
    resource: str,
    namespace: str | None,
) -> ClusterError:
    message = body
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("message", body)
    if status in (401, 403):
        if status == 401:
            message = f"the credentials of user {kube.context.user!r} were rejected: {message}"
        return RbacDenied(verb or "access", resource or "the API", namespace, message=message)
    if status == 0:
        return ContextUnreachable(kube.context.name, kube.context.server, reason)
    what = f"{verb} {resource}".strip()
    return KubeApiError(status, reason, message, what=what)


# -------------------------------------------------------------------- client


class Kube:
    """A connection to one kubeconfig context."""

    def __init__(
        self, api_client: k8s_client.ApiClient, context: ContextInfo, kubeconfig_path: str
    ) -> None:
        self.api = api_client
        self.context = context
        self.kubeconfig_path = kubeconfig_path
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovered: set[str] = set()
        self._lock = threading.Lock()
        for res in _BUILTIN:
            self._remember(res)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> Kube:
        """Connect to ``context`` (default: the current one) of the kubeconfig in effect.

        Raises NoKubeconfig or UnknownContext; no request is made yet.
        """
        files = kubeconfig.kubeconfig_paths(path)
        joined = os.pathsep.join(str(f) for f in files)
        info = kubeconfig.get_context(context, joined)
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=joined,
                context=info.name,
                client_configuration=configuration,
                persist_config=False,
            )
        except k8s_config.ConfigException as exc:
            raise NoKubeconfig([f"{joined}: {exc}"])
        configuration.retries = 1
        return cls(k8s_client.ApiClient(configuration), info, joined)

    @property
    def namespace(self) -> str:
        """The context's default namespace."""
        return self.context.namespace

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------- resources

    def _remember(self, res: Resource) -> None:
        for key in (res.kind, res.plural, res.kind.lower()):
            self._resources[(res.api_version, key)] = res

    def resource(self, api_version: str, kind_or_plural: str) -> Resource:
        """Resolve a kind or plural; uses API discovery for unknown ones."""
        key = (api_version, kind_or_plural)
        with self._lock:
            found = self._resources.get(key)
        if found:
            return found
        if api_version not in self._discovered:
            self._discover(api_version)
            with self._lock:
                found = self._resources.get(key) or self._resources.get(
                    (api_version, kind_or_plural.lower())
                )
            if found:
                return found
        raise KubeApiError(
            404,
            "NotFound",
            f"the server does not serve {kind_or_plural!r} in {api_version!r}",
            what="discovery",
        )

    def _discover(self, api_version: str) -> None:
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        doc = self.request("GET", path, verb="discover", resource=api_version) or {}
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for item in doc.get("resources", []):
                if "/" in item.get("name", ""):
                    continue  # subresource
                self._remember(
                    Resource(group, version, item["name"], item["kind"], item["namespaced"])
                )
            self._discovered.add(api_version)

    # ------------------------------------------------------------- transport

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        method, url, header_params, body, post = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self.api.call_api(method, url, header_params, body, post, _request_timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        verb: str = "",
        resource: str = "",
        namespace: str | None = None,
        not_found_ok: bool = False,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> dict[str, Any] | None:
        """One API call returning the decoded JSON (None for 404 when ``not_found_ok``)."""
        with map_exceptions(self, verb, resource, namespace):
            resp = self._send(
                method, path, query=query, body=body, content_type=content_type, timeout=timeout
            )
            data = resp.read()
        if resp.status == 404 and not_found_ok:
            return None
        if not 200 <= resp.status < 300:
            raise _status_error(
                self,
                resp.status,
                str(resp.reason),
                data.decode("utf-8", "replace"),
                verb,
                resource,
                namespace,
            )
        if not data:
            return {}
        decoded = json.loads(data)
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    # ------------------------------------------------------------------ CRUD

    def version(self) -> dict[str, Any]:
        """``GET /version`` (also a cheap reachability check)."""
        return self.request("GET", "/version", verb="get", resource="version") or {}

    def get(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        res = self.resource(api_version, kind)
        path = res.path(namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request(
            "GET", path, verb="get", resource=res.display, namespace=namespace, not_found_ok=True
        )

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[dict[str, Any]], str]:
        """All objects (following ``continue`` pages) and the list's resourceVersion."""
        res = self.resource(api_version, kind)
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", page_size)]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if token:
                query.append(("continue", token))
            page = (
                self.request(
                    "GET",
                    res.path(namespace),
                    query=query,
                    verb="list",
                    resource=res.display,
                    namespace=namespace,
                )
                or {}
            )
            for item in page.get("items") or []:
                item.setdefault("kind", res.kind)
                item.setdefault("apiVersion", res.api_version)
                items.append(item)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return items, str(meta.get("resourceVersion", ""))

    def create(
        self, api_version: str, kind: str, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        res = self.resource(api_version, kind)
        ns = namespace or (body.get("metadata") or {}).get("namespace")
        return (
            self.request(
                "POST", res.path(ns), body=body, verb="create", resource=res.display, namespace=ns
            )
            or {}
        )

    def replace(
        self, api_version: str, kind: str, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        res = self.resource(api_version, kind)
        meta = body.get("metadata") or {}
        ns = namespace or meta.get("namespace")
        return (
            self.request(
                "PUT",
                res.path(ns, meta["name"]),
                body=body,
                verb="update",
                resource=res.display,
                namespace=ns,
            )
            or {}
        )

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict[str, Any] | builtins.list[dict[str, Any]],
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        field_manager: str = "waylay",
        force: bool = False,
    ) -> dict[str, Any]:
        res = self.resource(api_version, kind)
        path = res.path(namespace, name) + (f"/{subresource}" if subresource else "")
        query: list[tuple[str, Any]] = [("fieldManager", field_manager)]
        if force:
            query.append(("force", "true"))
        return (
            self.request(
                "PATCH",
                path,
                query=query,
                body=patch,
                content_type=_PATCH_CONTENT_TYPES[patch_type],
                verb="patch",
                resource=res.display,
                namespace=namespace,
            )
            or {}
        )

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: Literal["Background", "Foreground", "Orphan"] = "Background",
    ) -> bool:
        """Delete; False when it was already gone."""
        res = self.resource(api_version, kind)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        found = self.request(
            "DELETE",
            res.path(namespace, name),
            body=body,
            verb="delete",
            resource=res.display,
            namespace=namespace,
            not_found_ok=True,
        )
        return found is not None

    def apply(self, body: dict[str, Any], *, field_manager: str = "waylay") -> dict[str, Any]:
        """Server-side apply of a complete object (created when missing)."""
        meta = body.get("metadata") or {}
        return self.patch(
            body["apiVersion"],
            body["kind"],
            meta["name"],
            body,
            meta.get("namespace"),
            patch_type="apply",
            field_manager=field_manager,
            force=True,
        )

    # ----------------------------------------------------------------- watch

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Watcher:
        """A resumable watch; iterate it in a thread, ``stop()`` it from anywhere."""
        return Watcher(
            self,
            self.resource(api_version, kind),
            namespace,
            resource_version,
            label_selector,
            field_selector,
            timeout_seconds,
        )

    # ---------------------------------------------------------- port-forward

    def portforward(self, pod: str, namespace: str, port: int) -> PortForward:
        """A connected stream to ``port`` on the pod's loopback (``pods/portforward``)."""
        # kubernetes.stream swaps ``call_api`` on the ApiClient while it connects, so a
        # shared client would send other threads' requests down the WebSocket path:
        # every port-forward gets an ApiClient of its own.
        api = k8s_client.ApiClient(self.api.configuration)
        core_api = k8s_client.CoreV1Api(api)
        try:
            with map_exceptions(self, "create", "pods/portforward", namespace):
                try:
                    pf = k8s_portforward(
                        core_api.connect_get_namespaced_pod_portforward,
                        pod,
                        namespace,
                        ports=str(port),
                        _request_timeout=DEFAULT_TIMEOUT,
                    )
                except k8s_client.ApiException as exc:
                    raise self._portforward_error(exc, pod, namespace)
        finally:
            api.close()  # type: ignore[no-untyped-call]
        return PortForward(pf, port)

    def _portforward_error(
        self, exc: k8s_client.ApiException, pod: str, namespace: str
    ) -> ClusterError:
        text = str(exc.reason)
        for code in (401, 403, 404):
            if f"{code}" in text and "Handshake status" in text:
                return _status_error(
                    self, code, text, text, "create", "pods/portforward", namespace
                )
        return ContextUnreachable(
            self.context.name, self.context.server, f"port-forward to {namespace}/{pod}: {text}"
        )


class PortForward:
    """One forwarded connection: a socket connected to the pod's port."""

    def __init__(self, pf: Any, port: int) -> None:
        self._pf = pf
        self.port = port
        wrapped = pf.socket(port)
        self.socket: socket.socket = getattr(wrapped, "_socket", wrapped)

    def error(self) -> str | None:
        """What the server reported on the port's error channel, if anything."""
        err = self._pf.error(self.port)
        return str(err) if err else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()
        self._pf.close()

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watcher:
    """Iterates changes forever: resumes from the last resourceVersion, relists on 410.

    The first event is RELISTED (unless a resourceVersion was given). Stream
    ends and bookmarks are handled inside; errors leave as ``core.errors``.
    """

    def __init__(
        self,
        kube: Kube,
        res: Resource,
        namespace: str | None,
        resource_version: str | None,
        label_selector: str | None,
        field_selector: str | None,
        timeout_seconds: int,
    ) -> None:
        self.kube = kube
        self.res = res
        self.namespace = namespace
        self.resource_version = resource_version
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.timeout_seconds = timeout_seconds
        self._stopped = threading.Event()
        self._response: Any = None
        self.streams = 0
        """How many watch requests were opened (resumes included)."""

    def stop(self) -> None:
        """Ends the iteration (safe from any thread)."""
        self._stopped.set()
        resp = self._response
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def __iter__(self) -> Iterator[WatchEvent]:
        while not self._stopped.is_set():
            if not self.resource_version:
                items, rv = self.kube.list(
                    self.res.api_version,
                    self.res.plural,
                    self.namespace,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                )
                self.resource_version = rv
                yield WatchEvent("RELISTED", objects=items)
                continue
            yield from self._one_stream()

    def _one_stream(self) -> Iterator[WatchEvent]:
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", self.resource_version),
            ("timeoutSeconds", self.timeout_seconds),
        ]
        if self.label_selector:
            query.append(("labelSelector", self.label_selector))
        if self.field_selector:
            query.append(("fieldSelector", self.field_selector))
        started = time.monotonic()
        kube, display = self.kube, self.res.display
        with map_exceptions(kube, "watch", display, self.namespace):
            try:
                resp = kube._send(
                    "GET",
                    self.res.path(self.namespace),
                    query=query,
                    timeout=(DEFAULT_TIMEOUT[0], self.timeout_seconds + 15),
                )
            except (urllib3.exceptions.HTTPError, OSError):
                if self._stopped.is_set():
                    return
                raise
        self.streams += 1
        if resp.status == 410:
            resp.read()
            self.resource_version = None
            return
        if not 200 <= resp.status < 300:
            body = resp.read().decode("utf-8", "replace")
            raise _status_error(
                kube, resp.status, str(resp.reason), body, "watch", display, self.namespace
            )
        raw = resp.response
        self._response = raw
        try:
            for line in self._lines(raw):
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        self.resource_version = None
                        return
                    raise _status_error(
                        kube,
                        int(obj.get("code") or 500),
                        str(obj.get("reason", "")),
                        json.dumps(obj),
                        "watch",
                        display,
                        self.namespace,
                    )
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = str(rv)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    obj.setdefault("kind", self.res.kind)
                    obj.setdefault("apiVersion", self.res.api_version)
                    yield WatchEvent(kind, object=obj)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._stopped.is_set():
                return
            if time.monotonic() - started < 1.0:
                raise ContextUnreachable(kube.context.name, kube.context.server, _reason(exc))
            # a long stream that broke: resume from the last resourceVersion
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                raw.release_conn()

    def _lines(self, raw: Any) -> Iterator[bytes]:
        buffer = bytearray()
        for chunk in raw.stream(amt=None, decode_content=False):
            if self._stopped.is_set():
                return
            buffer.extend(chunk)
            while (nl := buffer.find(b"\n")) != -1:
                line = bytes(buffer[:nl]).strip()
                del buffer[: nl + 1]
                if line:
                    yield line
