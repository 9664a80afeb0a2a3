"""domdata._named: typing.NamedTuple's class syntax, built without importing typing.

The same class source is built by both and must behave the same; every named
tuple class a single-item command loads is checked against its annotations.
"""

from __future__ import annotations

import typing

import pytest

import domdata
from domdata import _changes, _handoff, _named
from domdata.domains import SourceSpec
from domdata.stores.base import Holdings, StoreDescription, StoreOptions

SOURCE = '''
class Point(NamedTuple):
    """A point on a grid."""

    x: int
    y: "int | None" = None
    label: str = "p"

    @property
    def norm(self) -> int:
        return abs(self.x) + abs(self.y or 0)

    def __str__(self) -> str:
        return f"({self.x}, {self.y})"

    @classmethod
    def origin(cls):
        return cls(0, 0)
'''


def _build(named_tuple: object) -> typing.Any:
    namespace: dict[str, object] = {"NamedTuple": named_tuple, "__name__": "sample"}
    exec(SOURCE, namespace)
    return namespace["Point"]


def test_a_class_is_built_as_typing_builds_it() -> None:
    ours, theirs = _build(_named.NamedTuple), _build(typing.NamedTuple)
    assert ours._fields == theirs._fields == ("x", "y", "label")
    assert ours._field_defaults == theirs._field_defaults == {"y": None, "label": "p"}
    assert (ours.__name__, ours.__qualname__, ours.__module__, ours.__doc__) == (
        theirs.__name__,
        theirs.__qualname__,
        theirs.__module__,
        theirs.__doc__,
    )
    assert issubclass(ours, tuple)
    for point in (ours(3, -4), theirs(3, -4)):
        assert point == (3, -4, "p")
        assert repr(point) == "Point(x=3, y=-4, label='p')"
        assert str(point) == "(3, -4)"
        assert point.norm == 7
        assert point._replace(label="q").label == "q"
        assert point._asdict() == {"x": 3, "y": -4, "label": "p"}
    assert ours.origin() == theirs.origin() == (0, 0, "p")
    assert type(ours.origin()) is ours


def test_a_field_without_a_default_after_one_with_is_refused_as_typing_does() -> None:
    source = "class Bad(NamedTuple):\n    a: int = 1\n    b: int\n"
    for named_tuple in (_named.NamedTuple, typing.NamedTuple):
        with pytest.raises(TypeError, match="default"):
            exec(source, {"NamedTuple": named_tuple, "__name__": "sample"})


def test_only_named_tuple_alone_is_a_base() -> None:
    with pytest.raises(TypeError, match="derives from NamedTuple alone"):
        exec("class Both(NamedTuple, int):\n    a: int\n", {"NamedTuple": _named.NamedTuple, "__name__": "x"})


@pytest.mark.parametrize(
    "cls",
    [
        domdata.Incarnation,
        domdata.Domain,
        domdata.Item,
        domdata.Change,
        _changes._RetentionFields,
        _handoff.Grant,
        _handoff.HandOff,
        SourceSpec,
        StoreDescription,
        Holdings,
        StoreOptions,
    ],
)
def test_domdatas_named_tuples_have_their_annotated_fields(cls: typing.Any) -> None:
    assert cls._fields == tuple(cls.__annotations__)
    assert cls.__doc__
    assert issubclass(cls, tuple)
