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


def check_url(url: str) -> None:
    """InvalidURL if *url* begins or ends with a space or holds a control
    character: urlsplit strips some of them and keeps others, so the store
    opened would not be the one written. Escape them (``%20``, ``%09``)."""
    if url.isprintable() and url.strip() == url:
        return
    bad = next((c for c in url if not c.isprintable()), None)
    if bad is not None:
        raise InvalidURL(
            f"the URL holds a control character ({bad!r}): write it percent-escaped", store=url
        )
    raise InvalidURL("the URL begins or ends with a space: remove it, or write it as %20", store=url)


def split_checked(url: str) -> tuple[str, str, str, str, str]:
    """``split(url)``, with urlsplit's ValueError for a host's unmatched
    bracket (``sqlite://[::1/x``) as InvalidURL."""
    try:
        return split(url)
    except ValueError as exc:
        raise InvalidURL(
            f"the URL's host has an unmatched '[' or ']' (urllib: {exc}); a path holding one is"
            " written after three slashes (sqlite:///dir/[x].db) or percent-escaped (%5B, %5D)",
            store=url,
        ) from None


def local_path(url: str, form: str) -> str:
    """The path of ``<scheme>:///absolute/path`` or ``<scheme>:relative/path``
    (*form* says which, for the error). Percent-escapes are decoded, except an
    escaped ``/`` or NUL; a host, a query string or a fragment is refused."""
    if "\0" in url:
        raise InvalidURL("a store URL cannot hold a NUL character", store=url)
    if "?" in url or "#" in url:
        raise InvalidURL(f"query strings and fragments are not supported: the URL is {form}", store=url)
    _, netloc, path, _, _ = split_checked(url)
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
