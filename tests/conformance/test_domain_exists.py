"""DomainExists names the domain that exists, on every store: never the
domid the refused create would have had."""

from __future__ import annotations

import pytest

import domdata
from tests.kits import Setup


@pytest.fixture
def managed(setup: Setup) -> domdata.Context:
    if not setup.source.managed:
        pytest.skip("domdata creates domains only with the managed source")
    return setup.open()


@pytest.mark.parametrize("domid", [None, 9])
def test_a_taken_name_names_the_domain_that_has_it(managed: domdata.Context, domid: int | None) -> None:
    with managed:
        managed.managed.create("web1", domid=3)
        with pytest.raises(domdata.DomainExists, match="web1") as caught:
            managed.managed.create("web1", domid=domid)
        assert caught.value.domain == 3
        assert "domain 3:" in str(caught.value)
        assert "domain 1" not in str(caught.value)
        assert "domain 9" not in str(caught.value)
        assert [(d.domid, d.name) for d in managed.domains.domains()] == [(3, "web1")]


def test_a_taken_domid_names_that_domid(managed: domdata.Context) -> None:
    with managed:
        managed.managed.create("web1", domid=3)
        with pytest.raises(domdata.DomainExists, match="domid") as caught:
            managed.managed.create("db1", domid=3)
        assert caught.value.domain == 3
