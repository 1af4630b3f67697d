"""retrysafe: make the tool calls of LLM agents safe to retry.

Canonical fingerprints and idempotency keys (Rust), with more layers built on them.
"""

from __future__ import annotations

from ._exceptions import (
    FingerprintError,
    FingerprintTypeError,
    FingerprintValueError,
    IdempotencyInProgressError,
    IdempotencyKeyMismatchError,
    LeaseLostError,
    OutcomeUnknownError,
    RetryExhausted,
    RetryRefusedError,
    RetrysafeError,
    StoreError,
    ToolLoopError,
)
from ._keys import IdempKey
from ._native import canonical_json, fingerprint

__version__ = "0.1.0"

__all__ = [
    "FingerprintError",
    "FingerprintTypeError",
    "FingerprintValueError",
    "IdempKey",
    "IdempotencyInProgressError",
    "IdempotencyKeyMismatchError",
    "LeaseLostError",
    "OutcomeUnknownError",
    "RetryExhausted",
    "RetryRefusedError",
    "RetrysafeError",
    "StoreError",
    "ToolLoopError",
    "canonical_json",
    "fingerprint",
]
