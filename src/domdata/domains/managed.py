"""The ``managed`` domain source: the toolstack creates and destroys domains
through domdata, which keeps the domain table in the store itself."""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import InvalidDomain
from .._types import Domain, Incarnation, canonical_uuid, check_domid, uuid_shaped
from ..stores.base import DomainTable
from .base import Closed, DomainSource

MAX_NAME_LENGTH = 64


def check_name(name: object) -> str:
    """A domain name: 1..64 printable characters, not a domid (digits, -digits), not a uuid."""
    if not isinstance(name, str):
        raise InvalidDomain(f"a domain name is a str, not {type(name).__name__}")
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise InvalidDomain(f"a domain name has 1 to {MAX_NAME_LENGTH} characters")
    if not name.isprintable() or name != name.strip():
        raise InvalidDomain(f"domain name {name!r} has unprintable or surrounding space characters")
    if name.isdigit() or (name[0] == "-" and name[1:].isascii() and name[1:].isdigit()):
        raise InvalidDomain(f"domain name {name!r} would read as a domid")
    if uuid_shaped(name):
        raise InvalidDomain(f"domain name {name!r} would read as a uuid")
    return name


class ManagedDomains(DomainSource):
    """Domains created and destroyed through domdata, kept in the store."""

    spec = "managed"

    def __init__(self, table: DomainTable) -> None:
        self._table: DomainTable | Closed = table

    def create(self, name: str | None = None, *, domid: int | None = None, uuid: str | None = None) -> Domain:
        """Create a domain: the lowest free domid >= 1 and a random uuid unless given.

        Raises DomainExists if the domid or the name is taken.
        """
        import uuid as _uuid  # imports platform: only where a uuid is made

        return self._table.add(
            None if domid is None else check_domid(domid),
            str(_uuid.uuid4()) if uuid is None else canonical_uuid(uuid),
            None if name is None else check_name(name),
        )

    def remove(self, incarnation: Incarnation) -> int:
        """Remove the domain and all its data in one transaction (call under its lock).

        Returns how many items went with it.
        """
        return self._table.remove(incarnation)

    def incarnation(self, domid: int) -> Incarnation | None:
        domain = self._table.get(domid)
        return None if domain is None else domain.incarnation

    def domains(self) -> Sequence[Domain]:
        return self._table.all()

    def incarnations(self) -> set[Incarnation]:
        return self._table.incarnations()

    def by_domid(self, domid: int) -> Domain | None:
        return self._table.get(domid)

    def by_uuid(self, uuid: str) -> Sequence[Domain]:
        return self._table.with_uuid(uuid)

    def by_name(self, name: str) -> Domain | None:
        return self._table.with_name(name)

    def close(self, store: str | None = None) -> None:
        """The store closes the table; every later call raises StoreUnavailable."""
        self._table = Closed(store)
