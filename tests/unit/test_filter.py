"""Tests for the tag filter in salt_nats.forwarder."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salt_nats.config import DEFAULT_EXCLUDE, parse_engine_settings
from salt_nats.forwarder import TagFilter

JOB_RETURN = "salt/job/20261204194039500871/ret/web01"


def default_filter(include: tuple[str, ...] = ()) -> TagFilter:
    return TagFilter(include, DEFAULT_EXCLUDE)


@pytest.mark.parametrize(
    "tag",
    [
        "salt/wheel/20261204194039500871/ret",
        "salt/job/20261204194039500871/publish",
        "cluster/peer/join",
        "cluster/x",
    ],
)
def test_default_excludes_block(tag: str) -> None:
    assert default_filter().allows(tag) is False


@pytest.mark.parametrize(
    "tag",
    [
        JOB_RETURN,
        "salt/job/20261204194039500871/new",
        "salt/wheel/20261204194039500871/new",
        "salt/auth",
        "minion_start",
        "salt/job/20261204194039500871/publisher",
        "clusters/x",
        "cluster",
    ],
)
def test_default_excludes_pass(tag: str) -> None:
    assert default_filter().allows(tag) is True


def test_no_globs_allow_everything() -> None:
    tag_filter = TagFilter((), ())

    assert tag_filter.allows("cluster/x") is True
    assert tag_filter.allows("") is True


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("salt/auth", True),
        (JOB_RETURN, True),
        ("salt/job/20261204194039500871/new", False),
        ("minion_start", False),
        ("salt/authx", False),
    ],
)
def test_include_globs(tag: str, expected: bool) -> None:
    tag_filter = default_filter(include=("salt/auth", "salt/job/*/ret/*"))

    assert tag_filter.allows(tag) is expected


def test_exclude_wins_over_include() -> None:
    tag_filter = default_filter(include=("salt/job/*",))

    assert tag_filter.allows("salt/job/20261204194039500871/publish") is False
    assert tag_filter.allows(JOB_RETURN) is True


def test_explicit_exclude_wins() -> None:
    tag_filter = TagFilter(("salt/*",), ("salt/auth",))

    assert tag_filter.allows("salt/auth") is False
    assert tag_filter.allows("salt/key") is True


def test_star_crosses_slash() -> None:
    tag_filter = TagFilter(("salt/job/*",), ())

    assert tag_filter.allows(JOB_RETURN) is True


def test_star_in_middle_crosses_slash() -> None:
    # A job return from a minion whose id is "publish" ends like a publication.
    assert default_filter().allows("salt/job/20261204194039500871/ret/publish") is False


def test_question_mark_single_character() -> None:
    tag_filter = TagFilter(("salt/job/?/new",), ())

    assert tag_filter.allows("salt/job/1/new") is True
    assert tag_filter.allows("salt/job/12/new") is False


def test_character_class() -> None:
    tag_filter = TagFilter(("minion/refresh/[!d]*",), ())

    assert tag_filter.allows("minion/refresh/web01") is True
    assert tag_filter.allows("minion/refresh/db01") is False


def test_glob_matches_whole_tag() -> None:
    tag_filter = TagFilter(("salt/auth",), ())

    assert tag_filter.allows("salt/auth/extra") is False
    assert tag_filter.allows("pre/salt/auth") is False


def test_include_case_sensitive() -> None:
    tag_filter = TagFilter(("salt/auth",), ())

    assert tag_filter.allows("SALT/AUTH") is False


def test_exclude_case_sensitive() -> None:
    assert default_filter().allows("Cluster/x") is True


def test_newline_in_tag() -> None:
    tag_filter = TagFilter(("custom/*",), ())

    assert tag_filter.allows("custom/line\nbreak") is True
    assert tag_filter.allows("custom/x\n") is True


def test_filter_from_settings_without_defaults() -> None:
    settings_ = parse_engine_settings({"exclude_defaults": False, "exclude": ["minion/*"]})
    tag_filter = TagFilter(settings_.include, settings_.excluded_globs)

    assert tag_filter.allows("salt/job/20261204194039500871/publish") is True
    assert tag_filter.allows("minion/refresh/web01") is False


tag_characters = st.sampled_from([*"ab/*?[]!-\n.%", "\u00e9"])
glob_text = st.text(tag_characters, max_size=12)


@settings(max_examples=500, deadline=None)
@given(
    tag=st.text(tag_characters, max_size=16),
    include=st.lists(glob_text, max_size=3),
    exclude=st.lists(glob_text, max_size=3),
)
def test_filter_agrees_with_fnmatch(tag: str, include: list[str], exclude: list[str]) -> None:
    excluded = any(fnmatchcase(tag, glob) for glob in exclude)
    included = not include or any(fnmatchcase(tag, glob) for glob in include)

    assert TagFilter(include, exclude).allows(tag) is (included and not excluded)
