"""Connection strings as they may be shown: the one place a URL is made safe to print (in
reprs, errors and logs), as SQLAlchemy's ``URL`` renders its password ``***``."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url"]

#: Query parameters (and libpq ``key=value`` words) whose value is a secret.
_SECRET_NAMES = re.compile(
    r"pass|pwd|secret|token|credential|api[-_]?key|access[-_]?key|private[-_]?key|auth",
    re.IGNORECASE,
)
_CONNINFO_SECRET = re.compile(
    r"\b(password|sslpassword|passfile)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """``url`` with its password and every secret-looking query parameter as ``***``; a
    libpq ``key=value`` string with its ``password=`` so too. Never raises."""
    try:
        if "://" not in url:
            return _CONNINFO_SECRET.sub(lambda m: f"{m.group(1)}=***", url)
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostinfo}" if ":" in userinfo else f"{user}@{hostinfo}"
            if not user and ":" in userinfo:
                netloc = f":***@{hostinfo}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if _SECRET_NAMES.search(k) else v) for k, v in pairs], safe="*"
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except Exception:  # a string no parser takes: show nothing of it
        return "<unparsable connection string>"
