"""Env files in every syntax.

Covers: sh output sourced by a real /bin/sh reproduces every value exactly
(quotes, $, backslashes, newlines); docker output is KEY=value with
multi-line values left out under a comment; compose quoting; csh, cmd and
ps quoting rules; JSON; invalid shell names skipped; files are 0600;
unknown syntax refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from core.envfile import SYNTAXES, render_env, render_json, write_env

ENV = {
    "PLAIN": "value",
    "SPACES": "a b  c",
    "QUOTES": 'it\'s "quoted"',
    "DOLLAR": "$HOME and `cmd` and \\n",
    "MULTI": "line1\nline2",
    "PCT": "100%",
    "EMPTY": "",
}


def test_sh_round_trip(tmp_path: Path) -> None:
    path = write_env({**ENV, "bad-name": "x"}, tmp_path / "env.sh", "sh")
    assert (path.stat().st_mode & 0o777) == 0o600
    script = f". {path}; " + "; ".join(f'printf "%s\\0" "${k}"' for k in ENV)
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True, timeout=10).stdout
    assert out.decode().split("\0")[:-1] == list(ENV.values())
    assert "# bad-name left out" in path.read_text()


def test_docker() -> None:
    text = render_env(ENV, "docker")
    assert "PLAIN=value\n" in text
    assert 'QUOTES=it\'s "quoted"\n' in text
    assert "# MULTI left out" in text
    assert "line2" not in text


def test_compose() -> None:
    text = render_env(ENV, "compose")
    assert "PLAIN='value'\n" in text
    assert 'QUOTES="it\'s \\"quoted\\""\n' in text
    assert 'MULTI="line1\\nline2"\n' in text
    assert "MULTI='line1" not in text
    assert "DOLLAR='$HOME and `cmd` and \\n'" in text


def test_csh_cmd_ps() -> None:
    assert "setenv QUOTES 'it'\\''s \"quoted\"'" in render_env(ENV, "csh")
    cmd = render_env(ENV, "cmd")
    assert 'set "PCT=100%%"\r\n' in cmd and "REM MULTI left out" in cmd
    ps = render_env(ENV, "ps")
    assert "$Env:QUOTES = 'it''s \"quoted\"'" in ps
    assert "$Env:{bad-name} = 'x'" in render_env({"bad-name": "x"}, "ps")


@pytest.mark.skipif(shutil.which("csh") is None and shutil.which("tcsh") is None, reason="no csh")
def test_csh_round_trip(tmp_path: Path) -> None:
    shell = shutil.which("tcsh") or shutil.which("csh")
    assert shell
    env = {k: v for k, v in ENV.items() if k != "MULTI"}
    path = write_env(env, tmp_path / "env.csh", "csh")
    out = subprocess.run(
        [shell, "-f", "-c", f"source {path}; printenv QUOTES"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    assert out == env["QUOTES"] + "\n"


def test_json_and_unknown(tmp_path: Path) -> None:
    assert json.loads(render_json(ENV)) == ENV
    path = write_env(ENV, tmp_path / "env.json", as_json=True)
    assert json.loads(path.read_text()) == ENV
    with pytest.raises(ValueError, match="docker, compose"):
        render_env(ENV, "fish")
    assert set(SYNTAXES) == {"docker", "compose", "sh", "csh", "cmd", "ps"}
