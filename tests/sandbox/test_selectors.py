"""Label and field selectors, and merge-patch laws, checked with hypothesis.

Covers: a metav1 LabelSelector dict and its string form (as in
``Scale.status.selector``) select exactly the same label sets; string
selectors parse every operator and reject garbage with 400; field selectors
compare dotted paths (missing fields as ""); RFC 7386 merge patch is
idempotent and a strategic merge of maps without lists agrees with it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.errors import ApiError
from sandbox.patch import merge_patch, strategic_merge
from sandbox.selectors import (
    FieldSelector,
    LabelSelector,
    format_label_selector,
    match_label_selector,
)

keys = st.sampled_from(["app", "tier", "example.com/role", "x"])
values = st.sampled_from(["a", "b", "c-1", "v.2"])
labels = st.dictionaries(keys, values, max_size=4)
expressions = st.lists(
    st.fixed_dictionaries(
        {
            "key": keys,
            "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
            "values": st.lists(values, min_size=1, max_size=3, unique=True),
        }
    ),
    max_size=3,
)
selectors = st.fixed_dictionaries({"matchLabels": labels, "matchExpressions": expressions})


@given(selectors, labels)
def test_dict_and_string_selectors_agree(selector: dict, candidate: dict) -> None:
    text = format_label_selector(selector)
    obj = {"metadata": {"labels": candidate}}
    assert LabelSelector(text).matches(obj) == match_label_selector(selector, candidate)


def test_string_selector_operators() -> None:
    obj = {"metadata": {"labels": {"app": "web", "tier": "front"}}}
    for text, expected in [
        ("app=web", True),
        ("app==web,tier", True),
        ("app!=web", False),
        ("app in (web, api)", True),
        ("tier notin (front)", False),
        ("!tier", False),
        ("missing", False),
        ("!missing", True),
        ("", True),
    ]:
        assert LabelSelector(text).matches(obj) == expected, text
    with pytest.raises(ApiError) as bad:
        LabelSelector("app in web")
    assert bad.value.code == 400


def test_field_selector() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n"}, "status": {"phase": "Running"}, "spec": {}}
    assert FieldSelector("metadata.name=p,status.phase==Running").matches(pod)
    assert FieldSelector("spec.nodeName=").matches(pod)
    assert not FieldSelector("spec.nodeName!=").matches(pod)
    with pytest.raises(ApiError):
        FieldSelector("metadata.name")


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
maps = st.recursive(
    st.dictionaries(st.text("abc", min_size=1, max_size=2), json_leaf, max_size=3),
    lambda inner: st.dictionaries(
        st.text("abc", min_size=1, max_size=2), st.one_of(json_leaf, inner), max_size=3
    ),
    max_leaves=10,
)


@given(maps, maps)
def test_merge_patch_laws(target: dict, patch: dict) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once
    assert strategic_merge(target, patch) == once
