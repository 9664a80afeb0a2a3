"""What a PostgreSQL URL says about the connection is checked before any is
made: a port or a connect_timeout libpq would misread (or wait forever on)
is InvalidURL, never a traceback or an endless wait."""

from __future__ import annotations

import pytest

import domdata


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://localhost:99999/x",
        "postgresql://localhost:0/x",
        "postgresql://localhost:abc/x",
        "postgresql://h1:5432,h2:70000/x",
        "postgresql://localhost/x?port=-1",
        "postgresql://localhost/x?connect_timeout=abc",
        "postgresql://localhost/x?connect_timeout=nan",
        "postgresql://localhost/x?connect_timeout=1.5",
        "postgresql://localhost/x?connect_timeout=-5",
        "postgresql://localhost/x?connect_timeout=0",
        "postgresql://localhost/x?connect_timeout=1e300",
    ],
)
def test_a_port_or_connect_timeout_libpq_would_misread_is_invalid(url: str) -> None:
    with pytest.raises(domdata.InvalidURL, match=r"port|connect_timeout"):
        domdata.open(url)
