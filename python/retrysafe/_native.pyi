"""The native hot path of retrysafe: RFC 8785 canonical JSON and SHA-256 fingerprints."""

from typing import Any

from typing_extensions import final

__all__ = [
    "MAX_DEPTH",
    "CallKeyer",
    "canonical_json",
    "digest_with_head",
    "fingerprint",
    "idempotency_digest",
]

MAX_DEPTH: int
"""Nesting deeper than this raises :class:`retrysafe.FingerprintValueError`."""

def canonical_json(obj: Any, /, *, strict: bool = False) -> bytes:
    """Return the canonical JSON bytes of ``obj`` (exactly RFC 8785 for plain JSON values).

    Values beyond JSON follow retrysafe's documented projection (sets sorted, bytes as
    base64, datetimes as ISO 8601, Decimal as a normalised string...). With ``strict=True``
    integers beyond ±2**53 raise instead of keeping their exact digits.

    >>> canonical_json({"b": 1.0, "a": [True, None]})
    b'{"a":[true,null],"b":1}'
    """

def fingerprint(obj: Any, /, *, secret: bytes | None = None, strict: bool = False) -> str:
    """Return SHA-256 (HMAC-SHA256 with ``secret``) of ``canonical_json(obj)`` as 64 lowercase hex.

    Hashes while serializing: no intermediate copy of the canonical bytes.
    """

def idempotency_digest(scope: str, args: Any, /, *, secret: bytes | None = None) -> str:
    """Return the 64-hex digest behind :meth:`retrysafe.IdempKey.for_args`.

    SHA-256 (or HMAC-SHA256) over a version tag, the length-prefixed UTF-8 scope and the
    canonical JSON of ``args``.
    """

def digest_with_head(head: bytes, obj: Any, /, *, secret: bytes | None = None) -> str:
    """SHA-256 (or HMAC) of ``head + canonical_json(obj)`` as 64 hex: the slow path of
    :class:`CallKeyer` gives the same digest."""

@final
class CallKeyer:
    """Binds the calls of one function and fingerprints them in one native call.

    ``names``/``defaults``: the parameters (``empty`` marks "no default"); ``positional``:
    how many may be passed positionally; ``skip``: leading positionals left out (``self``).
    """

    def __new__(
        cls,
        head: bytes,
        names: list[str],
        defaults: list[Any],
        positional: int,
        skip: int,
        /,
        *,
        prefix: str | None = None,
        raw_limit: int = 0,
        secret: bytes | None = None,
        hidden: list[str] | None = None,
        empty: Any,
    ) -> CallKeyer: ...
    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None, /) -> str | bytes | None:
        """``prefix`` + the 64-hex digest of the bound call; with ``raw_limit``, the bytes
        ``prefix + canonical JSON`` when they fit. ``None`` when the call does not bind simply
        (the caller then binds with ``inspect.signature``)."""
    @property
    def head(self) -> bytes:
        """The bytes hashed before the arguments."""
