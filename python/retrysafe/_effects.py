"""Side-effect tags: what a tool does to the world, declared once."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

__all__ = [
    "EFFECT_ATTRIBUTE",
    "Effect",
    "effect",
    "effect_from_mcp",
    "get_effect",
    "get_tags",
    "has_tag",
    "has_side_effect",
    "is_destructive",
    "is_read_only",
    "is_retry_safe",
    "mcp_annotations",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute a tagged function carries; other layers (and `retrysafe vet`) read it.
EFFECT_ATTRIBUTE = "__retrysafe_effect__"
#: The attribute holding a function's custom tags (a frozenset of str).
TAGS_ATTRIBUTE = "__retrysafe_tags__"
#: A custom tag: lowercase, a letter first, then letters, digits and ``_ . : -`` (64 at most).
_TAG = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")


class Effect(str, enum.Enum):
    """What a tool does; picks cache, retry and idempotency policy.

    - ``READ``: no side effect; cached, retried, safe to re-run.
    - ``IDEMPOTENT``: a side effect that is the same however often it runs (a PUT).
    - ``WRITE``: a side effect that repeats if run twice (a charge, an e-mail).
    - ``DESTRUCTIVE``: a side effect that destroys or cannot be undone (a DELETE).

    An untagged tool is treated as ``DESTRUCTIVE`` wherever a policy must be chosen.
    """

    READ = "read"
    IDEMPOTENT = "idempotent"
    WRITE = "write"
    DESTRUCTIVE = "destructive"

    @classmethod
    def parse(cls, value: Effect | str) -> Effect:
        """``Effect.parse("Write")`` is ``Effect.WRITE``; unknown names raise ``ValueError``."""
        if isinstance(value, Effect):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        names = ", ".join(e.value for e in cls)
        raise ValueError(f"unknown effect {value!r}: expected one of {names}")

    @property
    def has_side_effect(self) -> bool:
        """True for everything but READ."""
        return self is not Effect.READ

    @property
    def repeats_side_effect(self) -> bool:
        """True for WRITE and DESTRUCTIVE: running twice does twice the harm."""
        return self in (Effect.WRITE, Effect.DESTRUCTIVE)

    def __str__(self) -> str:
        return self.value


def _split(kinds: tuple[Effect | str, ...]) -> tuple[Effect | None, frozenset[str]]:
    """The one built-in effect among ``kinds`` (or None) and the custom tags."""
    found: Effect | None = None
    tags: set[str] = set()
    for kind in kinds:
        if isinstance(kind, Effect) or (
            isinstance(kind, str) and kind.strip().lower() in Effect._value2member_map_
        ):
            parsed = Effect.parse(kind)
            if found is not None and found is not parsed:
                raise ValueError(f"two effects given: {found.value} and {parsed.value}")
            found = parsed
        elif isinstance(kind, str) and _TAG.fullmatch(kind):
            tags.add(kind)
        else:
            names = ", ".join(e.value for e in Effect)
            raise ValueError(
                f"unknown effect {kind!r}: expected one of {names}, or a custom tag (lowercase, "
                "a letter first, then letters, digits, '_', '.', ':' or '-'; 64 at most)"
            )
    return found, frozenset(tags)


def effect(*kinds: Effect | str) -> Callable[[F], F]:
    """Tag a function (sync or async, or a method) with its side effect, and with custom
    tags of your own for routing (``"payments"``, ``"pii"``, ``"sends_email"``).

    The function object itself is returned, with attributes set; its signature, type and
    async-ness are unchanged. One built-in effect at most: tagging a function twice with
    different effects is an error; custom tags add up. A function with custom tags and no
    built-in effect is untagged for policy (treated as DESTRUCTIVE): a tag of your own
    never loosens retrysafe's policy. Query them with :func:`get_tags` / :func:`has_tag`.

    >>> @effect(Effect.WRITE, "payments")
    ... async def charge(customer: str, cents: int) -> None: ...
    >>> get_effect(charge), sorted(get_tags(charge))
    (<Effect.WRITE: 'write'>, ['payments'])
    """
    if not kinds:
        raise ValueError(
            "effect() needs an effect or a tag: effect(Effect.WRITE), effect('payments')"
        )
    parsed, tags = _split(kinds)

    def decorate(fn: F) -> F:
        target = getattr(fn, "__func__", fn)  # staticmethod / classmethod
        existing = getattr(target, EFFECT_ATTRIBUTE, None)
        if parsed is not None and existing is not None and existing is not parsed:
            raise ValueError(
                f"{getattr(fn, '__qualname__', fn)!r} is already tagged {existing.value}, not {parsed.value}"
            )
        if parsed is not None:
            setattr(target, EFFECT_ATTRIBUTE, parsed)
        if tags:
            setattr(target, TAGS_ATTRIBUTE, getattr(target, TAGS_ATTRIBUTE, frozenset()) | tags)
        return fn

    return decorate


def _unwrapped(fn: Any) -> Iterator[Any]:
    """``fn`` and what it wraps: ``functools.wraps`` chains (``__wrapped__``), bound
    methods and partials (32 levels at most)."""
    seen = 0
    while fn is not None and seen < 32:
        yield fn
        fn = (
            getattr(fn, "__wrapped__", None)
            or getattr(fn, "__func__", None)
            or getattr(fn, "func", None)
        )
        seen += 1


def get_tags(fn: Any) -> frozenset[str]:
    """The custom tags of a function (and of the functions it wraps), beside its effect."""
    found: frozenset[str] = frozenset()
    for each in _unwrapped(fn):
        tags = getattr(each, TAGS_ATTRIBUTE, None)
        if isinstance(tags, frozenset):
            found |= tags
    return found


def has_tag(fn: Any, tag: str) -> bool:
    """True when ``fn`` carries the custom tag ``tag``, or ``tag`` names its effect."""
    effect_ = get_effect(fn)
    return tag in get_tags(fn) or (effect_ is not None and effect_.value == tag)


def get_effect(fn: Any) -> Effect | None:
    """The effect a function was tagged with, or ``None`` when untagged.

    Follows ``functools.wraps`` chains (``__wrapped__``), bound methods and partials.
    """
    for each in _unwrapped(fn):
        tag = getattr(each, EFFECT_ATTRIBUTE, None)
        if isinstance(tag, Effect):
            return tag
    return None


def _policy_effect(fn_or_effect: Any) -> Effect:
    """The effect a policy goes by: the tag, with an untagged function as DESTRUCTIVE."""
    if isinstance(fn_or_effect, (Effect, str)):
        return Effect.parse(fn_or_effect)
    return get_effect(fn_or_effect) or Effect.DESTRUCTIVE


def is_retry_safe(fn_or_effect: Any) -> bool:
    """True when running the tool again cannot repeat a side effect: READ or IDEMPOTENT.
    Untagged counts as DESTRUCTIVE (False)."""
    return _policy_effect(fn_or_effect) in (Effect.READ, Effect.IDEMPOTENT)


def is_read_only(fn_or_effect: Any) -> bool:
    """True for a READ tool (no side effect). Untagged counts as DESTRUCTIVE (False)."""
    return _policy_effect(fn_or_effect) is Effect.READ


def is_destructive(fn_or_effect: Any) -> bool:
    """True for a DESTRUCTIVE tool, and for an untagged one (treated as DESTRUCTIVE)."""
    return _policy_effect(fn_or_effect) is Effect.DESTRUCTIVE


def has_side_effect(fn_or_effect: Any) -> bool:
    """True for everything but READ, an untagged tool included."""
    return _policy_effect(fn_or_effect) is not Effect.READ


def mcp_annotations(fn_or_effect: Any) -> dict[str, bool]:
    """The Model Context Protocol tool annotations for a function or an effect.

    An untagged function is described as DESTRUCTIVE (MCP's own default for a tool that is not
    read-only). ``openWorldHint`` is True: tools reach outside the agent.
    """
    kind = _policy_effect(fn_or_effect)
    return {
        "readOnlyHint": kind is Effect.READ,
        "destructiveHint": kind is Effect.DESTRUCTIVE,
        "idempotentHint": kind in (Effect.READ, Effect.IDEMPOTENT),
        "openWorldHint": True,
    }


def effect_from_mcp(annotations: Mapping[str, Any]) -> Effect:
    """The effect MCP annotations describe, with MCP's defaults for missing hints.

    MCP defaults: ``readOnlyHint`` false, ``destructiveHint`` true, ``idempotentHint`` false
    (the last two meaningful only when not read-only).
    """
    if annotations.get("readOnlyHint", False):
        return Effect.READ
    if annotations.get("destructiveHint", True):
        return Effect.DESTRUCTIVE
    if annotations.get("idempotentHint", False):
        return Effect.IDEMPOTENT
    return Effect.WRITE
