"""The sandbox's controllers: what turns Deployments into pods and Services into endpoints.

Each controller is an ``async def run_<name>(cluster)`` that runs until cancelled,
driven by ``Cluster.subscribe`` events through a keyed work queue
(``_base``/``_workqueue``). The server starts every entry of ``CONTROLLERS``
as a task next to the garbage collector and the kubelet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from . import deployment, endpoints, replicaset, statefulset
from ._base import ClusterLike

__all__ = ["CONTROLLERS"]

CONTROLLERS: list[Callable[[ClusterLike], Awaitable[None]]] = [
    deployment.run_deployment,
    replicaset.run_replicaset,
    statefulset.run_statefulset,
    endpoints.run_endpoints,
]
