"""Issue 12: store URLs are split without importing urllib.parse where that is
exact; the split is urlsplit's, whatever the URL."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from hypothesis import example, given, settings
from hypothesis import strategies as st

from domdata.stores._url import split

urls = st.text(alphabet="sqlitepgrSQL:/?#%@[]. +-_019\t\n\x00\u00e9", max_size=24)


schemes = st.sampled_from(["sqlite:", "libxl://", "x:"])


def _outcome(call: Callable[[str], tuple[str, ...]], url: str) -> object:
    try:
        return tuple(call(url))
    except ValueError as exc:  # a bracket urlsplit refuses: refused alike
        return repr(exc)


@settings(max_examples=1000)
@given(url=st.one_of(urls, st.builds(lambda s, r: s + r, schemes, urls)))
@example(url="sqlite:///tmp/x.db")
@example(url="SQLite:relative/x.db?mode=ro#f")
@example(url="sqlite://host/x")
@example(url="1sqlite:/x")
@example(url="sqlite:")
@example(url="//a/b")
def test_split_is_urlsplit(url: str) -> None:
    assert _outcome(split, url) == _outcome(urlsplit, url)
