"""``typing.NamedTuple``'s class syntax at run time, without importing typing.

Importing ``typing`` costs a single-item command a third of its start-up
budget (issue 12), so the modules such a command loads write::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from ._named import NamedTuple

Type checkers see typing's class. At run time this one builds the same
class with ``collections.namedtuple``: the fields are the annotated names in
order (annotations are kept as written, never evaluated), a field assigned
a value has that default, and everything else the body defines (docstring,
methods, properties, class methods) is set on the class. Subclassing the result is
plain subclassing, as with typing's.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



class _NamedTupleMeta(type):
    def __new__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        if bases != (NamedTuple,):
            raise TypeError(f"{name}: a named tuple class derives from NamedTuple alone")
        fields = list(namespace.get("__annotations__", {}))
        given = [field for field in fields if field in namespace]
        if given != fields[len(fields) - len(given) :]:
            raise TypeError(f"{name}: a field without a default follows one with a default")
        defaults = [namespace[field] for field in given]
        made = collections.namedtuple(name, fields, defaults=defaults, module=namespace["__module__"])  # type: ignore[misc]
        for key, value in namespace.items():
            if key != "__module__" and key not in fields:  # namedtuple sets the module
                setattr(made, key, value)
        return made


#: Derive a class from this one to make it a named tuple (see the module's docstring).
NamedTuple: Any = type.__new__(_NamedTupleMeta, "NamedTuple", (), {"__module__": __name__})
