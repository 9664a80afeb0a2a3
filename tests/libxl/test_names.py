"""libxl's file names: the sliced parser finds exactly what libxl's layout names."""

from __future__ import annotations

import itertools
import re
import uuid as _uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from domdata import Incarnation
from domdata.stores.libxl._names import incarnations_of, of_kind, parse

#: The layout as one expression: userdata-<a-z>.<domid>.<uuid>.<rest>, domid < 2**32.
_LAYOUT = re.compile(
    r"userdata-([a-z])\.(0|[1-9][0-9]{0,9})\."
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.(.+)",
    re.DOTALL,
)


def _reference(names: list[str]) -> list[tuple[str, str, Incarnation, str]]:
    found = []
    for name in names:
        match = _LAYOUT.fullmatch(name)
        if match is not None and int(match[2]) < 2**32:
            found.append((name, match[1], Incarnation(int(match[2]), match[3]), match[4]))
    return found


_UUIDS = [str(_uuid.UUID(int=n * 0x1111_2222_3333_4444_5555_6666_7777_8889)) for n in range(3)]
#: Each part of a name, right or slightly wrong.
_PREFIXES = ["userdata-", "userdata", "xuserdata-"]
_KINDS = ["d", "l", "m", "n", "D", "é", "", "dd"]
_DOMIDS = ["0", "1", "07", "00", "4294967295", "4294967296", "9999999999", "", "1.2", "\u0661"]
_UUID_TEXTS = [*_UUIDS, _UUIDS[0].upper(), _UUIDS[1][:-1], _UUIDS[2] + "0", ""]
_RESTS = ["xl", "libxl-json", "domain-userdata-lock", "domdata-domain.new", "", "a.b", "\n"]
_OTHERS = ["", "userdata-", "userdata-d", "userdata-d.", "domdata-domid.3", "domdata-source"]
#: Names near the layout, with its dots or others in their places.
_NAMES = st.one_of(
    st.tuples(
        *(st.sampled_from(part) for part in (_PREFIXES, _KINDS)),
        st.sampled_from([".", "", ".."]), st.sampled_from(_DOMIDS),
        st.sampled_from([".", "", ".."]), st.sampled_from(_UUID_TEXTS),
        st.sampled_from([".", "", ".."]), st.sampled_from(_RESTS),
    ).map("".join),
    st.sampled_from(_OTHERS),
)  # fmt: skip


def test_parse_finds_what_the_layout_names_among_every_combination_of_parts() -> None:
    names = [
        f"{p}{k}.{d}.{u}.{r}"
        for p, k, d, u, r in itertools.product(_PREFIXES, _KINDS, _DOMIDS, _UUID_TEXTS, _RESTS)
    ]
    names += _OTHERS
    assert [tuple(entry) for entry in parse(names)] == _reference(names)
    for name in names:
        found = _reference([name])
        for kind in "dlmn":
            assert incarnations_of(kind, [name]) == {i for _, k, i, _ in found if k == kind}, name


@settings(max_examples=300, deadline=None)
@given(st.lists(_NAMES, max_size=12))
def test_parse_finds_what_the_layout_names_and_nothing_else(names: list[str]) -> None:
    assert [tuple(entry) for entry in parse(names)] == _reference(names)


@settings(max_examples=300, deadline=None)
@given(st.lists(_NAMES, max_size=12), st.sampled_from("dlmn"))
def test_incarnations_of_a_kind_are_those_parse_finds(names: list[str], kind: str) -> None:
    assert incarnations_of(kind, names) == {e.incarnation for e in parse(of_kind(kind, names))}
    assert incarnations_of(kind, names) == {i for _, k, i, _ in _reference(names) if k == kind}


def test_a_key_repeated_across_names_is_parsed_for_each() -> None:
    uuid = _UUIDS[1]
    names = [f"userdata-d.5.{uuid}.xl", f"userdata-l.5.{uuid}.domain-userdata-lock", f"userdata-d.5.{uuid}."]
    assert [(e.kind, e.incarnation, e.rest) for e in parse(names)] == [
        ("d", Incarnation(5, uuid), "xl"),
        ("l", Incarnation(5, uuid), "domain-userdata-lock"),
    ]
