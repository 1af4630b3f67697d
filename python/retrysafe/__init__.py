"""retrysafe: make the tool calls of LLM agents safe to retry.

Canonical fingerprints and idempotency keys (Rust), a result cache with single-flight,
effect tags, and async retry.
"""

from __future__ import annotations

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
    "retry",
    "retrying",
    "with_retry",
]
