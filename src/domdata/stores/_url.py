"""The path a ``sqlite:`` or ``libxl:`` URL names, read strictly: what a URL
can say that domdata does not support is an error, never ignored."""

from __future__ import annotations

from .._errors import InvalidURL

_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


def split(url: str) -> tuple[str, str, str, str, str]:
    """``urllib.parse.urlsplit(url)`` as a plain tuple (scheme, netloc, path,
    query, fragment). urllib.parse costs a command more than the rest of a URL's
    handling (it imports ipaddress): a URL of printable ASCII without spaces or
    brackets, which urlsplit neither strips nor checks, is split here by
    urlsplit's own steps; any other goes to urlsplit."""
    if not (url.isascii() and url.isprintable()) or any(c in url for c in " []"):
        from urllib.parse import urlsplit

        return tuple(urlsplit(url))  # type: ignore[return-value]
    scheme = netloc = query = fragment = ""
    i = url.find(":")
    if i > 0 and url[0].isalpha() and all(c in _SCHEME_CHARS for c in url[:i]):
        scheme, url = url[:i].lower(), url[i + 1 :]
    if url[:2] == "//":
        end = min((p for p in (url.find(c, 2) for c in "/?#") if p >= 0), default=len(url))
        netloc, url = url[2:end], url[end:]
    if "#" in url:
        url, fragment = url.split("#", 1)
    if "?" in url:
        url, query = url.split("?", 1)
    return scheme, netloc, url, query, fragment


def local_path(url: str, form: str) -> str:
    """The path of ``<scheme>:///absolute/path`` or ``<scheme>:relative/path``
    (*form* says which, for the error). Percent-escapes are decoded, except an
    escaped ``/`` or NUL; a host, a query string or a fragment is refused."""
    if "\0" in url:
        raise InvalidURL("a store URL cannot hold a NUL character", store=url)
    if "?" in url or "#" in url:
        raise InvalidURL(f"query strings and fragments are not supported: the URL is {form}", store=url)
    _, netloc, path, _, _ = split(url)
    if netloc or not path:
        raise InvalidURL(f"the URL is {form}", store=url)
    lowered = path.lower()
    if "%2f" in lowered or "%00" in lowered:
        raise InvalidURL("an escaped '/' or NUL (%2F, %00) in a path is not supported", store=url)
    if "%" not in path:
        return path
    from urllib.parse import unquote

    try:
        return unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise InvalidURL("the path's percent-escapes are not UTF-8", store=url) from None
