"""The traffic manager (``python -m webhook``, image ``waylay/manager``).

- ``inject`` / ``review`` / ``admission``: the agent-injector mutating webhook
  (a pure ``build_response`` behind an HTTPS endpoint);
- ``registry``: sessions, agents and intercepts, with conflicts and expiry;
- ``agent_api`` / ``client_api`` (over ``wsconn``): the two WebSocket APIs;
- ``rollout`` / ``diagnose``: prepare, which makes agents arrive or says why not;
- ``apikeys``: team mode and API keys (format in ``core.apikeys``);
- ``kube``, ``config``, ``http``, ``server``, ``__main__``: wiring.
"""
