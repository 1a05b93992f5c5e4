"""sandbox.auth: bearer tokens to users.

Covers: the static admin/developer tokens map to their users and groups; no
header, another scheme, an empty or unknown token give None (401); a
service-account token authenticates as system:serviceaccount:NS:NAME with the
three SA groups; a tampered or foreign-secret SA token is refused; deleting
the ServiceAccount (service_account_exists) revokes its tokens; save/load
keeps every token valid; a broken credentials file is a clear error;
UserInfo.to_review is the AdmissionReview userInfo shape.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.auth import ADMIN, DEVELOPER, SYSTEM, Authenticator, UserInfo


def test_static_users() -> None:
    auth = Authenticator()
    assert auth.authenticate(f"Bearer {auth.token_for('admin')}") == ADMIN
    assert auth.authenticate(f"bearer {auth.token_for('developer')}") == DEVELOPER
    assert "system:masters" in ADMIN.groups
    assert "system:masters" not in DEVELOPER.groups
    assert "system:masters" in SYSTEM.groups
    assert auth.token_for("admin") != auth.token_for("developer")
    assert Authenticator().token_for("admin") != auth.token_for("admin")


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic YWRtaW46eA==", "Bearer nope"]
)
def test_missing_or_bad_credentials(header: str | None) -> None:
    assert Authenticator().authenticate(header) is None


def test_service_account_token() -> None:
    auth = Authenticator()
    user = auth.authenticate(f"Bearer {auth.issue_service_account_token('shop', 'waylay-manager')}")
    assert user == UserInfo(
        name="system:serviceaccount:shop:waylay-manager",
        groups=("system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"),
    )
    assert user.service_account == ("shop", "waylay-manager")
    assert DEVELOPER.service_account is None


def test_tampered_or_foreign_service_account_token() -> None:
    auth = Authenticator()
    token = auth.issue_service_account_token("shop", "app")
    other_ns = auth.issue_service_account_token("kube-system", "app")
    payload, _, signature = token.partition(".")[2].partition(".")
    forged = "wlsa." + other_ns.split(".")[1] + "." + signature
    assert auth.authenticate(f"Bearer {forged}") is None
    assert auth.authenticate(f"Bearer wlsa.{payload}.") is None
    assert auth.authenticate("Bearer wlsa.!!!.x") is None
    assert Authenticator().authenticate(f"Bearer {token}") is None


def test_deleted_service_account_token_is_revoked() -> None:
    existing = {("shop", "app")}
    auth = Authenticator(service_account_exists=lambda ns, name: (ns, name) in existing)
    header = f"Bearer {auth.issue_service_account_token('shop', 'app')}"
    assert auth.authenticate(header) is not None
    existing.clear()
    assert auth.authenticate(header) is None


def test_save_and_load_keep_tokens(tmp_path: Path) -> None:
    auth = Authenticator()
    sa = auth.issue_service_account_token("default", "default")
    path = tmp_path / "credentials.json"
    auth.save(path)
    assert path.stat().st_mode & 0o077 == 0
    again = Authenticator.load(path)
    assert again.authenticate(f"Bearer {auth.token_for('developer')}") == DEVELOPER
    assert again.authenticate(f"Bearer {sa}") is not None


def test_load_broken_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="start it again"):
        Authenticator.load(path)


def test_user_info_for_admission_review() -> None:
    assert DEVELOPER.to_review() == {"username": "developer", "groups": ["system:authenticated"]}
