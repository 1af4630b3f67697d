"""retrysafe: make the tool calls of LLM agents safe to retry.

Canonical fingerprints and idempotency keys (Rust), a result cache with single-flight,
effect tags, and async retry.

The public names load on first use (PEP 562): ``import retrysafe`` costs ~1 ms, and a
program (or ``retrysafe vet``) pays only for the parts it touches.
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: typing (with re and collections) is most of what
# a bare `import retrysafe` would cost. Type checkers read the name as typing's.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from ._cache import CachedTool, CacheInfo, CacheStats, cache_tool
    from ._classify import RETRY_STATUSES, is_transient
    from ._effects import (
        Effect,
        effect,
        effect_from_mcp,
        get_effect,
        get_tags,
        has_side_effect,
        has_tag,
        is_destructive,
        is_read_only,
        is_retry_safe,
        mcp_annotations,
    )
    from ._exceptions import (
        FingerprintError,
        FingerprintTypeError,
        FingerprintValueError,
        IdempotencyInProgressError,
        IdempotencyKeyMismatchError,
        LeaseLostError,
        OutcomeUnknownError,
        RepeatNeedsConfirmationError,
        RetryExhausted,
        RetryLaterError,
        RetryRefusedError,
        RetrysafeError,
        SessionRequiredError,
        StoreError,
        ToolLoopError,
    )
    from ._guard import LoopGuard, LoopStop, current_guard
    from ._idempotent import (
        IdempotencyHandle,
        IdempotentTool,
        NotApplied,
        current_fence,
        current_key,
        idempotent,
        resolve,
        side_effect_started,
    )
    from ._identity import Session, current_session, session
    from ._keys import IdempKey
    from ._native import canonical_json, fingerprint
    from ._outcomes import publish_outcomes
    from ._retry import (
        Attempt,
        RetryBudget,
        RetryConfig,
        RetryEvent,
        RetryStats,
        collect_retry_stats,
        on_result,
        retry,
        retrying,
        with_retry,
    )
    from ._telemetry import report
    from ._tool import ToolOutcome, ToolRegistry, ToolSpec, default_registry, json_schema, tool
    from .stores import MemoryStore, Store

__version__ = "0.1.0"

__all__ = [
    "tool",
    "json_schema",
    "default_registry",
    "ToolSpec",
    "ToolRegistry",
    "ToolOutcome",
    "current_guard",
    "LoopStop",
    "LoopGuard",
    "session",
    "current_session",
    "side_effect_started",
    "resolve",
    "idempotent",
    "current_key",
    "current_fence",
    "Session",
    "NotApplied",
    "IdempotencyHandle",
    "IdempotentTool",
    "RETRY_STATUSES",
    "Attempt",
    "CacheInfo",
    "CachedTool",
    "CacheStats",
    "Effect",
    "FingerprintError",
    "FingerprintTypeError",
    "FingerprintValueError",
    "IdempKey",
    "IdempotencyInProgressError",
    "IdempotencyKeyMismatchError",
    "LeaseLostError",
    "MemoryStore",
    "OutcomeUnknownError",
    "RetryBudget",
    "RetryConfig",
    "RetryEvent",
    "RetryExhausted",
    "RepeatNeedsConfirmationError",
    "RetryLaterError",
    "RetryRefusedError",
    "RetryStats",
    "RetrysafeError",
    "SessionRequiredError",
    "Store",
    "StoreError",
    "ToolLoopError",
    "cache_tool",
    "canonical_json",
    "collect_retry_stats",
    "effect",
    "effect_from_mcp",
    "fingerprint",
    "get_effect",
    "get_tags",
    "report",
    "has_side_effect",
    "has_tag",
    "is_destructive",
    "is_read_only",
    "is_retry_safe",
    "is_transient",
    "mcp_annotations",
    "on_result",
    "publish_outcomes",
    "retry",
    "retrying",
    "with_retry",
]

#: Where each public name lives: loaded, and kept in this module, at first access.
_WHERE: dict[str, str] = {
    "tool": "._tool",
    "json_schema": "._tool",
    "default_registry": "._tool",
    "ToolSpec": "._tool",
    "ToolRegistry": "._tool",
    "ToolOutcome": "._tool",
    "current_guard": "._guard",
    "LoopStop": "._guard",
    "LoopGuard": "._guard",
    "session": "._identity",
    "current_session": "._identity",
    "side_effect_started": "._idempotent",
    "resolve": "._idempotent",
    "idempotent": "._idempotent",
    "current_key": "._idempotent",
    "current_fence": "._idempotent",
    "Session": "._identity",
    "NotApplied": "._idempotent",
    "IdempotencyHandle": "._idempotent",
    "IdempotentTool": "._idempotent",
    "RETRY_STATUSES": "._classify",
    "Attempt": "._retry",
    "CacheInfo": "._cache",
    "CachedTool": "._cache",
    "CacheStats": "._cache",
    "Effect": "._effects",
    "FingerprintError": "._exceptions",
    "FingerprintTypeError": "._exceptions",
    "FingerprintValueError": "._exceptions",
    "IdempKey": "._keys",
    "IdempotencyInProgressError": "._exceptions",
    "IdempotencyKeyMismatchError": "._exceptions",
    "LeaseLostError": "._exceptions",
    "MemoryStore": ".stores",
    "OutcomeUnknownError": "._exceptions",
    "RetryBudget": "._retry",
    "RetryConfig": "._retry",
    "RetryEvent": "._retry",
    "RetryExhausted": "._exceptions",
    "RepeatNeedsConfirmationError": "._exceptions",
    "RetryLaterError": "._exceptions",
    "RetryRefusedError": "._exceptions",
    "RetryStats": "._retry",
    "RetrysafeError": "._exceptions",
    "SessionRequiredError": "._exceptions",
    "Store": ".stores",
    "StoreError": "._exceptions",
    "ToolLoopError": "._exceptions",
    "cache_tool": "._cache",
    "canonical_json": "._native",
    "collect_retry_stats": "._retry",
    "effect": "._effects",
    "effect_from_mcp": "._effects",
    "fingerprint": "._native",
    "get_effect": "._effects",
    "get_tags": "._effects",
    "report": "._telemetry",
    "has_side_effect": "._effects",
    "has_tag": "._effects",
    "is_destructive": "._effects",
    "is_read_only": "._effects",
    "is_retry_safe": "._effects",
    "is_transient": "._classify",
    "mcp_annotations": "._effects",
    "on_result": "._retry",
    "publish_outcomes": "._outcomes",
    "retry": "._retry",
    "retrying": "._retry",
    "with_retry": "._retry",
}


#: The public subpackages, reachable as attributes too (``retrysafe.stores.RedisStore``
#: after ``import retrysafe``, as when the package loaded them eagerly).
_SUBMODULES = frozenset(
    {"console", "framework", "integrations", "records", "stores", "testing", "vet"}
)


def __getattr__(name: str) -> Any:
    import importlib

    where = _WHERE.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where, __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'retrysafe' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
