"""Idempotency keys: stable across processes, scoped, safe to send to a remote."""

from __future__ import annotations

from typing import Any, final

from ._native import idempotency_digest

__all__ = ["IdempKey"]

_EXPLICIT_TAG = b"retrysafe/explicit-key/v1\0"
_MAX_EXPLICIT = 255


@final
class IdempKey:
    """An idempotency key: the same scope and arguments always give the same key.

    ``str(key)`` is what to send to a remote (``ik_`` + 32 hex, 128 bits: within every
    provider's limit); ``key.hex`` is the full 64-hex digest, ``key.uuid`` the first 128
    bits as an RFC 9562 UUIDv8 for remotes that want a UUID.

    >>> key = IdempKey.for_args(scope="charge:session-42", args={"amount": 1000, "currency": "eur"})
    >>> str(key).startswith("ik_") and len(str(key)) == 35
    True
    """

    __slots__ = ("_hex", "_scope", "_text")

    def __init__(self, text: str, hex: str, scope: str | None) -> None:
        self._text = text
        self._hex = hex
        self._scope = scope

    @classmethod
    def for_args(cls, *, scope: str, args: Any, secret: bytes | None = None) -> IdempKey:
        """Derive a key from a scope (name the session and the tool) and the call's arguments.

        The digest covers a version tag, the length-prefixed scope and the canonical JSON of
        ``args`` (HMAC-SHA256 with ``secret``, so a key reveals nothing about low-entropy
        arguments such as an e-mail address). Dict order, ``1`` vs ``1.0`` and set order
        never change the key.
        """
        if not isinstance(scope, str):
            raise TypeError(f"scope must be a str, not {type(scope).__name__}")
        if not scope:
            raise ValueError("scope must not be empty: name the session and the tool")
        digest = idempotency_digest(scope, args, secret=secret)
        return cls("ik_" + digest[:32], digest, scope)

    @classmethod
    def explicit(cls, key: str) -> IdempKey:
        """Wrap a caller-given key (1 to 255 printable ASCII characters), validated."""
        if not isinstance(key, str):
            raise TypeError(f"an explicit idempotency key must be a str, not {type(key).__name__}")
        if not key:
            raise ValueError("an explicit idempotency key must not be empty")
        if len(key) > _MAX_EXPLICIT:
            raise ValueError(
                f"an explicit idempotency key has at most {_MAX_EXPLICIT} characters, got {len(key)}"
            )
        for i, ch in enumerate(key):
            if not " " <= ch <= "~":
                raise ValueError(
                    f"an explicit idempotency key must be printable ASCII: {ch!r} at index {i}"
                )
        if key != key.strip():
            raise ValueError("an explicit idempotency key must not start or end with a space")
        import hashlib  # OpenSSL's bindings take 5 ms to import; explicit keys are rare

        digest = hashlib.sha256(_EXPLICIT_TAG + key.encode("ascii")).hexdigest()
        return cls(key, digest, None)

    @property
    def hex(self) -> str:
        """The full 64-hex SHA-256 (or HMAC) digest; for stores and logs."""
        return self._hex

    @property
    def scope(self) -> str | None:
        """The scope the key was derived in; ``None`` for an explicit key."""
        return self._scope

    @property
    def uuid(self) -> str:
        """The first 128 bits of the digest as an RFC 9562 UUIDv8 string."""
        h = self._hex
        variant = "89ab"[int(h[16], 16) & 0x3]
        return f"{h[0:8]}-{h[8:12]}-8{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"IdempKey({self._text!r}, scope={self._scope!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdempKey):
            return NotImplemented
        return self._hex == other._hex and self._text == other._text

    def __hash__(self) -> int:
        return hash(self._hex)
