"""Masking secrets in values that are shown to people (config dumps, status output)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "**********"

# Query parameters of filesystem URIs that carry credentials (pyarrow's s3://, gs://, ...).
_SECRET_PARAM = re.compile(r"(secret|password|passwd|token|access[_-]?key|credential|signature|sig)", re.I)


def mask_url(value: str) -> str:
    """`value` with the password of any userinfo and secret-looking query parameters masked."""
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if "@" not in parts.netloc and not parts.query:
        return value  # nothing to hide (and urlunsplit would turn memory:// into memory:)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
