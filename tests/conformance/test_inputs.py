"""Bad input gets the named error, and changes nothing (DESIGN section 1)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import domdata
from domdata import Domain
from tests.kits import Setup

FIXTURES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ALLOWED = "".join(ch for ch in map(chr, range(0x21, 0x7F)) if ch not in "/*?[]\\")

valid_userids = st.text(alphabet=ALLOWED, min_size=1, max_size=64).filter(
    lambda u: u != "domain-userdata-lock"
)
invalid_userids = st.one_of(
    st.just(""),
    st.just("domain-userdata-lock"),
    st.sampled_from(
        [
            "../etc/passwd",
            "a/b",
            "/",
            "x*",
            "x?",
            "[a]",
            "back\\slash",
            "sp ace",
            "tab\tx",
            "nul\0x",
            "caf\u00e9",
            "\u2603",
            "a" * 65,
        ]
    ),
    st.text(alphabet=ALLOWED, min_size=65, max_size=100),
    st.builds(
        lambda a, bad, b: a + bad + b,
        st.text(alphabet=ALLOWED, max_size=20),
        st.sampled_from(list("/*?[]\\ \x00\x7f\x1b\u00a0\u0101")),
        st.text(alphabet=ALLOWED, max_size=20),
    ),
)


def _snapshot(ctx: domdata.Context) -> list[tuple[int, str, int]]:
    return [(i.domid, i.userid, i.size) for i in ctx.list()]


@FIXTURES
@given(userid=valid_userids)
def test_every_valid_userid_round_trips(ctx: domdata.Context, dom: Domain, userid: str) -> None:
    ctx.store(dom.domid, userid, userid.encode())
    assert ctx.retrieve(dom.domid, userid) == userid.encode()
    assert ctx.unlink(dom.domid, userid) is True


@FIXTURES
@given(userid=invalid_userids)
def test_invalid_userid_is_refused_and_changes_nothing(
    ctx: domdata.Context, dom: Domain, userid: str
) -> None:
    ctx.store(dom.domid, "xl", b"kept")
    before = _snapshot(ctx)
    for call in (
        lambda: ctx.store(dom.domid, userid, b"data"),
        lambda: ctx.retrieve(dom.domid, userid),
        lambda: ctx.unlink(dom.domid, userid),
    ):
        with pytest.raises(domdata.InvalidUserid) as caught:
            call()
        message = str(caught.value)
        assert "userid" in message
        assert ctx.store_url in message
        assert f"domain {dom.domid}" in message
    assert _snapshot(ctx) == before
    assert ctx.retrieve(dom.domid, "xl") == b"kept"


@pytest.mark.parametrize("userid", [".", "..", "-", "~root", "$HOME", "'quoted'"])
def test_dots_and_shell_characters_are_plain_userids(ctx: domdata.Context, dom: Domain, userid: str) -> None:
    # Legal by the rules: a userid only ever ends a file name, so without '/'
    # it cannot name another directory.
    ctx.store(dom.domid, userid, b"plain")
    assert [i.userid for i in ctx.list(dom.domid)] == [userid]
    assert ctx.retrieve(dom.domid, userid) == b"plain"


@pytest.mark.parametrize(
    ("userid", "rule"),
    [
        ("", "empty"),
        ("a" * 65, "at most 64"),
        ("a/b", "'/'"),
        ("a*", "glob"),
        ("a b", "printable ASCII"),
        ("domain-userdata-lock", "reserved"),
    ],
)
def test_invalid_userid_message_names_the_rule(
    ctx: domdata.Context, dom: Domain, userid: str, rule: str
) -> None:
    with pytest.raises(domdata.InvalidUserid, match=rule):
        ctx.store(dom.domid, userid, b"x")


@pytest.mark.parametrize("userid", [b"xl", 7, None, ["xl"], {"xl": 1}, bytearray(b"xl")])
def test_non_str_userid_is_refused(ctx: domdata.Context, dom: Domain, userid: object) -> None:
    # Unhashable ones too: a set of known userids must not turn them into TypeError.
    for call in (
        lambda: ctx.store(dom.domid, userid, b"x"),  # type: ignore[arg-type]
        lambda: ctx.retrieve(dom.domid, userid),  # type: ignore[arg-type]
        lambda: ctx.unlink(dom.domid, userid),  # type: ignore[arg-type]
    ):
        with pytest.raises(domdata.InvalidUserid, match="str"):
            call()


@pytest.mark.parametrize("data", ["text", 42, None, [1, 2], {"a": 1}])
def test_data_of_the_wrong_type_is_a_type_error_and_changes_nothing(
    ctx: domdata.Context, dom: Domain, data: object
) -> None:
    ctx.store(dom.domid, "xl", b"kept")
    with pytest.raises(TypeError) as caught:
        ctx.store(dom.domid, "xl", data)  # type: ignore[arg-type]
    assert isinstance(caught.value, domdata.InvalidData)
    assert "'xl'" in str(caught.value)
    assert ctx.retrieve(dom.domid, "xl") == b"kept"


def test_str_data_is_never_encoded(ctx: domdata.Context, dom: Domain) -> None:
    with pytest.raises(TypeError, match="str is refused"):
        ctx.store(dom.domid, "xl", "name = 'web1'")  # type: ignore[arg-type]
    assert ctx.retrieve(dom.domid, "xl") == b""


def test_data_over_the_limit_is_refused_and_the_old_item_stays(setup: Setup, dom: Domain) -> None:
    with setup.context(max_item_size=1000) as ctx:
        ctx.store(dom.domid, "xl", b"old")
        ctx.store(dom.domid, "big", b"x" * 1000)
        for too_big in (b"x" * 1001, bytearray(2000), memoryview(b"y" * 1001)):
            with pytest.raises(domdata.DataTooLarge) as caught:
                ctx.store(dom.domid, "xl", too_big)
            assert "1000 bytes" in str(caught.value)
            assert "'xl'" in str(caught.value)
        assert ctx.retrieve(dom.domid, "xl") == b"old"
        assert ctx.retrieve(dom.domid, "big") == b"x" * 1000


def test_default_limit_is_16_mib(ctx: domdata.Context, dom: Domain) -> None:
    assert domdata.DEFAULT_MAX_ITEM_SIZE == ctx.max_item_size == 16 * 1024 * 1024
    with pytest.raises(domdata.DataTooLarge, match=str(16 * 1024 * 1024)):
        ctx.store(dom.domid, "big", bytes(16 * 1024 * 1024 + 1))
    assert ctx.list(dom.domid) == []


def test_an_item_of_exactly_the_limit_is_stored(ctx: domdata.Context, dom: Domain) -> None:
    data = bytes(range(256)) * (16 * 4096)
    assert len(data) == ctx.max_item_size
    ctx.store(dom.domid, "big", data)
    assert ctx.retrieve(dom.domid, "big") == data


@pytest.mark.parametrize("domid", [-1, 2**32, 2**40, "5", 1.0, True])
def test_domid_outside_u32_is_invalid(ctx: domdata.Context, dom: Domain, domid: object) -> None:
    for call in (
        lambda: ctx.store(domid, "xl", b"x"),  # type: ignore[arg-type]
        lambda: ctx.retrieve(domid, "xl"),  # type: ignore[arg-type]
        lambda: ctx.list(domid),  # type: ignore[arg-type]
        lambda: ctx.destroy(domid),  # type: ignore[arg-type]
    ):
        with pytest.raises(domdata.InvalidDomain) as caught:
            call()
        assert ctx.store_url in str(caught.value)


def test_every_error_is_a_domdata_error() -> None:
    for name in domdata.__all__:
        value = getattr(domdata, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, domdata.Error), name
            assert value.__doc__, f"{name} has no docstring saying when it is raised"
