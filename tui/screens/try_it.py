"""The wizard result's "try it" line: a ``curl`` that works from where the user is.

With a preview URL, that URL (it adds the intercept's header itself). Else,
when the Service's clusterIP answers from this machine (the sandbox's are
loopback addresses), straight to it with the header. Else the in-cluster
name, which only resolves from a pod in the cluster, and the label says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui.wizard.plan import curl_line

if TYPE_CHECKING:
    from tui.source import InterceptOutcome

IN_CLUSTER = "from a pod in the cluster"


def try_it(outcome: InterceptOutcome) -> tuple[str, str]:
    """(the command, where it works from: "" when from here)."""
    spec = outcome.intercept.spec
    if outcome.preview_url:
        return curl_line(spec, outcome.preview_url), ""
    if outcome.cluster_ip:
        path = spec.path.value if spec.path else "/"
        host = f"[{outcome.cluster_ip}]" if ":" in outcome.cluster_ip else outcome.cluster_ip
        headers = "".join(f" -H '{k}: {v}'" for k, v in spec.headers.items())
        return f"curl{headers} http://{host}:{spec.service_port}{path}", ""
    return curl_line(spec), IN_CLUSTER
