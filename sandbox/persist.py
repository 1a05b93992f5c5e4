"""Keeping a sandbox's objects across ``stop`` and ``start``: ``DIR/state.json``.

The store is written (atomically, at most once a second, and once more on
shutdown) whenever it changed; a restarted server loads it back at the same
resourceVersion. Watch history is not kept: a client that resumes a watch from
before the restart gets 410 and lists again, as after an etcd compaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from sandbox.cluster import Cluster
from sandbox.store import Store

__all__ = ["Snapshotter", "load_store"]

log = logging.getLogger(__name__)

_INTERVAL = 1.0


def load_store(path: Path) -> Store | None:
    """The store saved at ``path``, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
        return Store.from_snapshot(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable sandbox state %s (%s); starting empty", path, exc)
        return None


class Snapshotter:
    """Saves ``cluster.store`` to ``path`` when it changed; run with :meth:`run`."""

    def __init__(self, cluster: Cluster, path: Path) -> None:
        self.cluster = cluster
        self.path = path
        self._saved = -1

    def save(self) -> None:
        revision = self.cluster.store.revision
        if revision == self._saved:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cluster.store.snapshot(), separators=(",", ":")))
        tmp.chmod(0o600)
        tmp.replace(self.path)
        self._saved = revision

    async def run(self) -> None:
        """Save every second while something changed; save once more when cancelled."""
        try:
            while True:
                await asyncio.sleep(_INTERVAL)
                self.save()
        finally:
            self.save()
