"""What the agent does with each taken-over port right now.

The manager's ``InterceptsSnapshot`` is the desired state; :class:`InterceptTable`
turns it into one :class:`PortPlan` per port (conflicts resolved, oldest wins)
and remembers the refusals so that they can be told to their clients.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.rules import Rule, RuleError, compile_rule, order, resolve
from core.protocol import InterceptInfo, Problem, TakeoverPort

log = logging.getLogger(__name__)


@dataclass
class PortPlan:
    port: TakeoverPort
    global_: InterceptInfo | None = None
    rules: list[Rule] = field(default_factory=list)
    """Personal intercepts, in matching order."""

    @property
    def idle(self) -> bool:
        return self.global_ is None and not self.rules

    @property
    def http_rules(self) -> list[Rule]:
        """What HTTP requests on the port are matched against.

        A global intercept takes every request (a rule with no condition, owned by its
        client: connections switched to HTTP routing under it); else the personal rules.
        """
        if self.global_ is not None:
            return [Rule(self.global_)]
        return self.rules


def _serves(port: TakeoverPort, info: InterceptInfo) -> bool:
    spec = info.spec
    if spec.protocol != port.protocol or spec.service != port.service:
        return False
    return spec.service_port == port.service_port or (
        bool(spec.service_port_name) and spec.service_port_name == port.service_port_name
    )


class InterceptTable:
    def __init__(self, ports: Sequence[TakeoverPort]) -> None:
        self.ports = list(ports)
        self.plans: dict[int, PortPlan] = {i: PortPlan(p) for i, p in enumerate(ports)}
        self.refused: list[tuple[InterceptInfo, Problem]] = []
        self.generation = 0

    def apply(self, intercepts: Sequence[InterceptInfo]) -> None:
        """Replace the whole state with a snapshot."""
        plans = {i: PortPlan(p) for i, p in enumerate(self.ports)}
        refused: list[tuple[InterceptInfo, Problem]] = []
        live = [i for i in intercepts if i.state not in ("removed", "failed")]
        for index, port in enumerate(self.ports):
            mine = [i for i in live if _serves(port, i)]
            accepted, lost = resolve(mine)
            refused += lost
            plan = plans[index]
            rules: list[Rule] = []
            for info in accepted:
                if info.spec.is_global:
                    plan.global_ = info
                    continue
                try:
                    rules.append(compile_rule(info))
                except RuleError as exc:
                    refused.append(
                        (
                            info,
                            Problem(
                                code="bad-rule", title="Invalid intercept rule", message=str(exc)
                            ),
                        )
                    )
            plan.rules = order(rules)
        self.plans = plans
        self.refused = refused
        self.generation += 1
        for info, problem in refused:
            log.warning("refusing intercept %s: %s", info.id, problem.message)

    def plan(self, index: int) -> PortPlan:
        """The plan of the ``index``-th taken-over port."""
        return self.plans[index]

    def by_id(self, intercept_id: str) -> InterceptInfo | None:
        for plan in self.plans.values():
            if plan.global_ is not None and plan.global_.id == intercept_id:
                return plan.global_
            for rule in plan.rules:
                if rule.id == intercept_id:
                    return rule.info
        return None
