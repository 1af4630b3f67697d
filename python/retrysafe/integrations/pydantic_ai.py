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
  a fresh one per new conversation), and ``tenant=`` (a function of the run context, e.g. of
  its deps) names the tenant. So the model's repeat of a write within a conversation replays
  its result, and another conversation's identical call is placed;
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
from pydantic_ai.tools import RunContext

from .. import _telemetry
from .._dispatch import failure_hint
from .._session import session

__all__ = ["Retrysafe"]


@dataclass
class Retrysafe(AbstractCapability[Any]):
    """Binds every tool call of a run to the run's conversation (``retrysafe.session``), and
    hands retrysafe errors back to the model as the tool's result."""

    _: KW_ONLY
    #: The tenant of a run, from its context (``lambda ctx: ctx.deps.tenant_id``), or None.
    tenant: Callable[[RunContext[Any]], str | None] | None = None
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
        token = _telemetry.tool_call_id(getattr(call, "tool_call_id", None))
        try:
            if not conversation:  # Agent.run always resolves one; a bare RunContext may not
                return await handler(args)
            tenant = self.tenant(ctx) if self.tenant is not None else None
            async with session(str(conversation), tenant=tenant):
                return await handler(args)
        except Exception as error:
            hint = failure_hint(error)
            if hint is None:
                raise
            # The model reads the hint as the tool's result; the run goes on.
            return {"error": type(error).__name__, "message": hint}
        finally:
            _telemetry.reset_tool_call_id(token)
