"""What an integration with an agent framework builds on: public, stable, small.

``retrysafe.integrations`` uses only these names (and the package's top-level ones); a
framework integration of your own should too::

    from retrysafe.framework import bind_call, failure_hint, is_async

- :func:`bind_call` (``retrysafe.session``): bind the call's identity: the principal your
  server authenticated, the tenant, the conversation, the turn, the model's tool-call id.
- :func:`failure_hint`: the text a model should read for a tool's failure (None: a bug, let
  it propagate).
- :func:`is_async`: whether a tool is a coroutine function (partials and async
  ``__call__`` included).
- :func:`escape`: a part of an identity made of several values (``client/issuer/subject``)
  with its delimiters escaped, so that distinct values never join into the same string.
"""

from __future__ import annotations

from ._dispatch import failure_hint
from ._identity import Session, current_session, escape, is_async, name_of
from ._identity import session as bind_call

__all__ = [
    "Session",
    "bind_call",
    "current_session",
    "escape",
    "failure_hint",
    "is_async",
    "name_of",
]
