"""End to end, last on the shared demo: team mode, API keys, uninstall.

Covers: team mode (`install --team`) refuses sessions without a key,
defaults to personal `auto` intercepts with WAYLAY_API_KEY, lets the admin
key create, list (`-o json` and a table) and revoke keys (`revoke` without
`--id` is a usage error; a revoked key is refused and never echoed); `login`
without a usable keyring names the fix and never echoes the key; `waylay
uninstall` removes the agents. Runs after every other module that uses the
shared ``demo`` (tests/core/conftest.py orders it last).
"""

from __future__ import annotations

import json
import subprocess

import yaml

from tests.core.e2ekit import WAYLAY, Demo, hit, local_server


def test_team_mode_keys_and_defaults(demo: Demo) -> None:
    installed = json.loads(demo.waylay("install", "--team", "-o", "json").stdout)
    admin_key = installed["admin_key"]
    assert admin_key
    # without a key the manager refuses, and the hint says how to log in
    refused = demo.waylay("intercept", "orders", "-n", "shop", "--port", "1", user="u", check=False)
    assert refused.returncode == 1 and "API key required" in refused.stderr
    assert "waylay login" in refused.stderr
    keyed = dict(demo.env, WAYLAY_API_KEY=admin_key)
    server, port = local_server("t")
    try:
        proc = subprocess.run(
            [*WAYLAY, "intercept", "orders", "-n", "shop", "--port", str(port)],
            env=dict(keyed, WAYLAY_DAEMON_SOCKET=str(demo.dir / "daemon-t" / "d.sock")),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr
        assert "personal: only requests matching x-waylay-intercept-id" in proc.stdout
        assert hit(demo.orders) == "app"  # untagged requests still reach the app
    finally:
        server.shutdown()
    created = subprocess.run(
        [*WAYLAY, "apikey", "create", "--user", "bob", "-o", "json"],
        env=keyed,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    bob = json.loads(created.stdout)
    assert bob["user"] == "bob" and bob["key"]
    # list, then revoke bob's key: his sessions end and the key is refused
    listed = demo.waylay("apikey", "list", "-o", "json", env={"WAYLAY_API_KEY": admin_key})
    assert bob["id"] in {k["id"] for k in json.loads(listed.stdout)}
    human = demo.waylay("apikey", "list", env={"WAYLAY_API_KEY": admin_key}).stdout
    assert human.startswith("ID") and "bob" in human
    missing = demo.waylay("apikey", "revoke", env={"WAYLAY_API_KEY": admin_key}, check=False)
    assert missing.returncode == 2 and "--id" in missing.stderr
    revoked = demo.waylay(
        "apikey", "revoke", "--id", bob["id"], "-o", "yaml", env={"WAYLAY_API_KEY": admin_key}
    )
    assert yaml.safe_load(revoked.stdout)["id"] == bob["id"]
    refused = demo.waylay(
        "intercept",
        "orders",
        "-n",
        "shop",
        user="bob",
        env={"WAYLAY_API_KEY": bob["key"]},
        check=False,
    )
    assert refused.returncode == 1 and "API key not valid" in refused.stderr, refused.stderr
    assert bob["key"] not in refused.stdout + refused.stderr
    # no usable keyring: login checks the key, then says what to do instead
    login = subprocess.run(
        [*WAYLAY, "login", "--api-key", admin_key],
        env=dict(demo.env, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert login.returncode == 1 and "No usable keyring backend" in login.stderr
    assert "WAYLAY_API_KEY" in login.stderr and admin_key not in login.stderr + login.stdout


def test_uninstall_removes_agents(demo: Demo) -> None:
    demo.waylay("uninstall")
    listed = json.loads(demo.waylay("list", "-n", "shop", "-o", "json").stdout)
    assert {w["name"]: w["agent_state"] for w in listed}["orders"] == "none"
