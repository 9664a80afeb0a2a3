"""The path a ``sqlite:`` or ``libxl:`` URL names, read strictly: what a URL
can say that domdata does not support is an error, never ignored."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .._errors import InvalidURL


def local_path(url: str, form: str) -> str:
    """The path of ``<scheme>:///absolute/path`` or ``<scheme>:relative/path``
    (*form* says which, for the error). Percent-escapes are decoded, except an
    escaped ``/`` or NUL; a host, a query string or a fragment is refused."""
    if "\0" in url:
        raise InvalidURL("a store URL cannot hold a NUL character", store=url)
    if "?" in url or "#" in url:
        raise InvalidURL(f"query strings and fragments are not supported: the URL is {form}", store=url)
    parts = urlsplit(url)
    if parts.netloc or not parts.path:
        raise InvalidURL(f"the URL is {form}", store=url)
    lowered = parts.path.lower()
    if "%2f" in lowered or "%00" in lowered:
        raise InvalidURL("an escaped '/' or NUL (%2F, %00) in a path is not supported", store=url)
    try:
        return unquote(parts.path, errors="strict")
    except UnicodeDecodeError:
        raise InvalidURL("the path's percent-escapes are not UTF-8", store=url) from None
