"""retrysafe for the OpenAI Agents SDK.

Run agents through :func:`run` (or :func:`run_sync`, :func:`run_streamed`), which take
exactly ``Runner.run``'s arguments, and make tools with :func:`function_tool` (``agents.function_tool`` plus the error
text retrysafe gives the model)::

    from retrysafe.integrations.openai_agents import function_tool, run

    @function_tool
    @tool.write(remote_idempotent=True)
    async def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

    result = await run(agent, "charge cus_42", session=SQLiteSession("conversation-42"))

``run`` binds the run's conversation to :func:`retrysafe.session` while the run lasts, so
every tool call of the run (each runs in a task started from it) is recorded per
conversation: the memory ``session``'s id, else ``conversation_id`` (a server-side
conversation), else ``run_config.group_id``; ``principal=`` and ``tenant=`` name who is
calling (server-side values), ``turn=`` the user turn (see :func:`conversation`). Without any of
them a write fails with :class:`~retrysafe.SessionRequiredError`, which the model reads,
never under a record shared by every user.

The tool's schema never has ``idempotency_key`` (retrysafe hides it from the signature the
SDK reads; the SDK calls tools positionally, and a ``None`` in the key's slot is filled).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import agents
from agents import Runner

from ..framework import bind_call, failure_hint

__all__ = [
    "conversation",
    "conversation_of",
    "function_tool",
    "run",
    "run_streamed",
    "run_sync",
]


def conversation_of(
    session: Any = None, conversation_id: str | None = None, run_config: Any = None
) -> str | None:
    """The conversation a run belongs to: its memory session's id, its server-side
    conversation id, or its run config's ``group_id``; None when it names none."""
    for candidate in (
        getattr(session, "session_id", None),
        conversation_id,
        getattr(run_config, "group_id", None),
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


@contextlib.contextmanager
def conversation(
    session: Any = None,
    conversation_id: str | None = None,
    run_config: Any = None,
    *,
    tenant: str | None = None,
    principal: str | None = None,
    turn: str | int | None = None,
) -> Iterator[str | None]:
    """Bind a run's conversation (see :func:`conversation_of`) as the retrysafe session,
    for code that calls ``Runner`` itself; yields the id, or None when there is none.

    ``principal`` and ``tenant``: who is calling, as your server authenticated them (never a
    value the model or the client chose). ``turn``: the user turn the run answers (e.g. the
    index of the user's message); with it, an identical write in a later turn asks for the
    user's confirmation instead of replaying silently (``repeat=`` of the tool)."""
    found = conversation_of(session, conversation_id, run_config)
    if found is None:
        yield None
        return
    with bind_call(
        found, tenant=tenant, principal=principal, turn=None if turn is None else str(turn)
    ):
        yield found


async def run(
    starting_agent: Any,
    input: Any,
    *,
    tenant: str | None = None,
    principal: str | None = None,
    turn: str | int | None = None,
    session: Any = None,
    conversation_id: str | None = None,
    run_config: Any = None,
    **kwargs: Any,
) -> Any:
    """``Runner.run`` inside the run's conversation (retrysafe.session)."""
    with conversation(
        session, conversation_id, run_config, tenant=tenant, principal=principal, turn=turn
    ):
        return await Runner.run(
            starting_agent,
            input,
            session=session,
            conversation_id=conversation_id,
            run_config=run_config,
            **kwargs,
        )


def run_streamed(
    starting_agent: Any,
    input: Any,
    *,
    tenant: str | None = None,
    principal: str | None = None,
    turn: str | int | None = None,
    session: Any = None,
    conversation_id: str | None = None,
    run_config: Any = None,
    **kwargs: Any,
) -> Any:
    """``Runner.run_streamed`` inside the run's conversation (retrysafe.session).

    The SDK starts the run's task here (it copies the context it is started in), so every
    tool call of the streamed run is bound, wherever and whenever its events are consumed::

        result = run_streamed(agent, "charge cus_42", session=SQLiteSession("conv-42"))
        async for event in result.stream_events():
            ...
    """
    return _within(
        Runner.run_streamed,
        starting_agent,
        input,
        (tenant, principal, turn, session, conversation_id, run_config),
        kwargs,
    )


def run_sync(
    starting_agent: Any,
    input: Any,
    *,
    tenant: str | None = None,
    principal: str | None = None,
    turn: str | int | None = None,
    session: Any = None,
    conversation_id: str | None = None,
    run_config: Any = None,
    **kwargs: Any,
) -> Any:
    """``Runner.run_sync`` inside the run's conversation (retrysafe.session)."""
    return _within(
        Runner.run_sync,
        starting_agent,
        input,
        (tenant, principal, turn, session, conversation_id, run_config),
        kwargs,
    )


def _within(
    runner: Callable[..., Any],
    starting_agent: Any,
    input: Any,
    identity: tuple[Any, Any, Any, Any, Any, Any],
    kwargs: dict[str, Any],
) -> Any:
    """``runner(...)`` (a sync entry point of ``Runner``) inside the run's conversation."""
    tenant, principal, turn, session, conversation_id, run_config = identity
    with conversation(
        session, conversation_id, run_config, tenant=tenant, principal=principal, turn=turn
    ):
        return runner(
            starting_agent,
            input,
            session=session,
            conversation_id=conversation_id,
            run_config=run_config,
            **kwargs,
        )


def tool_error_text(ctx: Any, error: Exception) -> str:
    """The text the model reads when a tool fails: a retrysafe error's ``llm_hint`` (an
    unknown outcome says not to repeat; the SDK's default says "Please try again")."""
    hint = failure_hint(error)
    return agents.default_tool_error_function(ctx, error) if hint is None else hint


def function_tool(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``agents.function_tool`` with :func:`tool_error_text` as its default error text."""
    options.setdefault("failure_error_function", tool_error_text)
    if fn is None:
        return lambda func: agents.function_tool(func, **options)
    return agents.function_tool(fn, **options)
