"""The managed domain table, on every store: create, find, destroy."""

from __future__ import annotations

import uuid

import pytest

import domdata
from tests.kits import Setup


@pytest.fixture
def managed(setup: Setup, ctx: domdata.Context) -> domdata.Context:
    if not setup.source.managed:
        pytest.skip("domdata creates domains only with the managed source")
    return ctx


def test_create_takes_the_lowest_free_domid_from_1(managed: domdata.Context) -> None:
    assert [managed.managed.create().domid for _ in range(3)] == [1, 2, 3]
    managed.destroy(2)
    managed.managed.create(domid=5)
    assert managed.managed.create().domid == 2
    assert managed.managed.create().domid == 4
    assert managed.managed.create().domid == 6


def test_create_gives_a_random_canonical_uuid_unless_told(managed: domdata.Context) -> None:
    a, b = managed.managed.create(), managed.managed.create()
    assert a.uuid != b.uuid
    assert str(uuid.UUID(a.uuid)) == a.uuid
    given = managed.managed.create(uuid="6695EB01-F6A4-8304-79AA-97F2502E193F")
    assert given.uuid == "6695eb01-f6a4-8304-79aa-97f2502e193f"


def test_domid_0_and_the_largest_domid_can_be_given(managed: domdata.Context) -> None:
    assert managed.managed.create(domid=0).domid == 0
    assert managed.managed.create(domid=2**32 - 1).domid == 2**32 - 1
    managed.store(2**32 - 1, "xl", b"top")
    assert managed.retrieve(2**32 - 1, "xl") == b"top"


def test_taken_domid_or_name_is_domain_exists(managed: domdata.Context) -> None:
    managed.managed.create("web1", domid=7)
    with pytest.raises(domdata.DomainExists, match="domid"):
        managed.managed.create(domid=7)
    with pytest.raises(domdata.DomainExists, match="web1"):
        managed.managed.create("web1")
    assert [(d.domid, d.name) for d in managed.domains.domains()] == [(7, "web1")]


@pytest.mark.parametrize(
    "name", ["", "123", "-1", "-0", "a" * 65, " web1", "tab\there", "6695eb01-f6a4-8304-79aa-97f2502e193f"]
)
def test_bad_names_are_invalid(managed: domdata.Context, name: str) -> None:
    with pytest.raises(domdata.InvalidDomain):
        managed.managed.create(name)
    assert managed.domains.domains() == []


@pytest.mark.parametrize("bad", ["not-a-uuid", "6695eb01f6a4830479aa97f2502e193f0"])
def test_bad_uuid_is_invalid(managed: domdata.Context, bad: str) -> None:
    with pytest.raises(domdata.InvalidDomain):
        managed.managed.create(uuid=bad)


@pytest.mark.parametrize("dom", ["-1", "-0", "-4294967296"])
def test_find_of_a_negative_domid_is_invalid(managed: domdata.Context, dom: str) -> None:
    """Not a name that names no domain (DomainNotFound): a domid out of range."""
    with pytest.raises(domdata.InvalidDomain, match=f"domid {dom} is outside"):
        managed.find(dom)


def test_find_by_domid_uuid_or_name(managed: domdata.Context) -> None:
    web = managed.managed.create("web1")
    managed.managed.create("db1")
    for text in (str(web.domid), web.uuid, web.uuid.upper(), "web1"):
        assert managed.domains.find(text) == web
    for missing in ("99", str(uuid.uuid4()), "nobody"):
        with pytest.raises(domdata.DomainNotFound):
            managed.domains.find(missing)


def test_a_uuid_shared_by_two_domains_is_ambiguous(managed: domdata.Context) -> None:
    first = managed.managed.create(domid=3)
    managed.managed.create(domid=4, uuid=first.uuid)
    with pytest.raises(domdata.DomainNotFound, match="use a domid"):
        managed.domains.find(first.uuid)


def test_destroy_frees_the_domid_and_the_name(managed: domdata.Context) -> None:
    web = managed.managed.create("web1")
    managed.store(web.domid, "xl", b"x")
    managed.destroy(web.domid)
    assert managed.domains.domains() == []
    again = managed.managed.create("web1")
    assert again.domid == web.domid
    assert again.uuid != web.uuid
    assert managed.retrieve(again.domid, "xl") == b""


def test_list_domains_is_ordered_by_domid(managed: domdata.Context) -> None:
    for domid in (9, 2, 5):
        managed.managed.create(f"d{domid}", domid=domid)
    assert [(d.domid, d.name) for d in managed.domains.domains()] == [(2, "d2"), (5, "d5"), (9, "d9")]
