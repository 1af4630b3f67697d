"""retrysafe for Strands Agents, through a plugin (Strands' own way to extend an agent).

One line on the agent::

    from retrysafe.integrations.strands import Retrysafe

    agent = Agent(model=model, tools=[charge_card], plugins=[Retrysafe()],
                  session_manager=FileSessionManager(session_id=conversation_id))
    agent("charge cus_42 $19.99", invocation_state={"principal": user_id})

Declare tools as usual, retrysafe's decorator below Strands' ``@tool``::

    @tool
    @retrysafe.tool.write(remote_idempotent=True)
    async def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

The plugin wraps every tool execution (a middleware of the ``ExecuteToolStage``):

- it binds :func:`retrysafe.session` for the call: the conversation is the agent's session
  (``agent.session_id``: its session manager's id, else an id of this agent object), the
  principal and tenant the ``"principal"``/``"tenant"`` of the invocation state your code
  passes to the agent's call (which the model cannot reach; ``principal=``/``tenant=``
  functions of the invocation state replace that rule), the turn the count of the user's messages,
  and the model's tool-use id;
- a failure retrysafe has a hint for (no session, an unknown outcome, a refusal, a
  transient failure of the remote) reaches the model as the tool's error result, the hint
  (Strands would show it ``Error: <the internal message>``).

The tool spec Strands builds never has ``idempotency_key``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from strands.middleware import ExecuteToolStage, ToolResultEvent
from strands.plugins import Plugin

from ..framework import bind_call, failure_hint

__all__ = ["Retrysafe", "turn_of"]

IdentityRule = Callable[[Mapping[str, Any]], "str | None"]


def turn_of(messages: Any) -> str:
    """The user turn of an agent's messages: how many the user wrote (tool results, which
    Strands sends as the user's, are not turns)."""
    count = 0
    for message in messages or []:
        if message.get("role") != "user":
            continue
        blocks = message.get("content") or []
        if not any("toolResult" in block for block in blocks):
            count += 1
    return str(count)


def _from_state(name: str) -> IdentityRule:
    def rule(state: Mapping[str, Any]) -> str | None:
        value = state.get(name)
        return value if isinstance(value, str) and value else None

    return rule


class Retrysafe(Plugin):
    """Binds every tool call of an agent to its identity (see the module's docstring) and
    hands retrysafe errors back to the model as the tool's error result."""

    name = "retrysafe"

    def __init__(
        self, *, principal: IdentityRule | None = None, tenant: IdentityRule | None = None
    ) -> None:
        super().__init__()
        self._principal = principal or _from_state("principal")
        self._tenant = tenant or _from_state("tenant")

    def init_agent(self, agent: Any) -> None:
        agent.add_middleware(ExecuteToolStage, self._wrap)

    async def _wrap(self, context: Any, next_fn: Any) -> AsyncIterator[Any]:
        state = context.invocation_state or {}
        binding = bind_call(
            str(context.agent.session_id),
            principal=self._principal(state),
            tenant=self._tenant(state),
            turn=turn_of(getattr(context.agent, "messages", None)),
            tool_call_id=str(context.tool_use.get("toolUseId") or "") or None,
        )
        with binding:
            async for event in next_fn(context):
                yield _with_hint(event)


def _with_hint(event: Any) -> Any:
    """A tool's error result carrying the hint of the failure retrysafe answered."""
    if not isinstance(event, ToolResultEvent) or event.exception is None:
        return event
    hint = failure_hint(event.exception)
    if hint is None:
        return event
    result = dict(event.tool_result)
    result.update(status="error", content=[{"text": hint}])
    return ToolResultEvent(result, exception=event.exception)  # type: ignore[arg-type]
