"""retrysafe for Pydantic AI agents, through a capability (the framework's own hook).

One line on the agent::

    from retrysafe.integrations.pydantic_ai import Retrysafe

    agent = Agent(model, capabilities=[Retrysafe()])

Declare tools as usual, with retrysafe's decorator next to the function (below the agent's)::

    @agent.tool_plain
    @tool.write(remote_idempotent=True)
    async def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

What the capability does for every tool call of a run:

- it runs inside :func:`retrysafe.session` for the run's conversation (``ctx.conversation_id``:
  the ``conversation_id=`` given to ``agent.run``, the one carried by ``message_history``, or
  a fresh one per new conversation); ``principal=`` and ``tenant=`` (functions of the run
  context, e.g. of its deps: the user your server authenticated) name who is calling; the
  turn is the count of user prompts in the run's messages. So the model's repeat of a write
  within a turn replays its result, another conversation's identical call is placed, and an
  identical write in a later turn asks for the user's confirmation first (``repeat=``);
- a retrysafe error (an unknown outcome, a refusal, a loop stop raised) becomes the tool's
  result, ``{"error": ..., "message": llm_hint}``, which the model reads and acts on, instead
  of ending the run.

The schema the model sees never has ``idempotency_key`` (retrysafe hides it from the
signature Pydantic AI reads), and Pydantic AI refuses an argument the schema lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelRequest, UserPromptPart
from pydantic_ai.tools import RunContext

from ..framework import bind_call, failure_hint

__all__ = ["Retrysafe", "turn_of"]


def turn_of(messages: list[Any]) -> str:
    """The user turn a run is in: how many user prompts its messages hold (the history and
    this run's prompt). A run re-executed after a crash with the same history is the same
    turn; the user's next message starts the next one."""
    count = 0
    for message in messages:
        if isinstance(message, ModelRequest) and any(
            isinstance(part, UserPromptPart) for part in message.parts
        ):
            count += 1
    return str(count)


@dataclass
class Retrysafe(AbstractCapability[Any]):
    """Binds every tool call of a run to its identity (``retrysafe.session``): the principal
    and tenant your code derives from the run context, the run's conversation, the user turn
    and the model's tool-call id; and hands retrysafe errors back to the model as the tool's
    result."""

    _: KW_ONLY
    #: The tenant of a run, from its context (``lambda ctx: ctx.deps.tenant_id``), or None.
    tenant: Callable[[RunContext[Any]], str | None] | None = None
    #: Who is calling, from its context (``lambda ctx: ctx.deps.user_id``: the user your
    #: server authenticated, never a value the model or the client chose), or None.
    principal: Callable[[RunContext[Any]], str | None] | None = None
    id: str | None = "retrysafe"

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None

    async def wrap_tool_execute(
        self,
        ctx: RunContext[Any],
        *,
        call: Any,
        tool_def: Any,
        args: Any,
        handler: Any,
    ) -> Any:
        conversation = ctx.conversation_id
        try:
            if not conversation:  # Agent.run always resolves one; a bare RunContext may not
                return await handler(args)
            async with bind_call(
                str(conversation),
                tenant=self.tenant(ctx) if self.tenant is not None else None,
                principal=self.principal(ctx) if self.principal is not None else None,
                turn=turn_of(ctx.messages),
                tool_call_id=getattr(call, "tool_call_id", None),
            ):
                return await handler(args)
        except Exception as error:
            hint = failure_hint(error)
            if hint is None:
                raise
            # The model reads the hint as the tool's result; the run goes on.
            return {"error": type(error).__name__, "message": hint}
