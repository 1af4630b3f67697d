"""A Pydantic AI agent made durable by its Temporal integration (``TemporalAgent``: each tool
call an activity), with retrysafe's interceptor on the worker. The model (a FunctionModel)
asks for one charge; the charge tool fails on its first attempt, before its side effect
(``ENGINE_FAIL=before``: the record is released, Temporal's retry of the activity charges)
or after it (``after``: UNKNOWN, the workflow fails at once, charged once)."""

from __future__ import annotations

import os
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalAgent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import FunctionModel
from temporalio import workflow

from retrysafe import side_effect_started, tool

from .units import note

DIRECTORY = os.environ.get("ENGINE_DIR", "")


def _model(messages: list[Any], info: Any) -> ModelResponse:
    if any(isinstance(p, ToolReturnPart) for m in messages for p in getattr(m, "parts", [])):
        return ModelResponse(parts=[TextPart("charged")])
    return ModelResponse(parts=[ToolCallPart("charge_card", {"order_id": "o-1"})])


agent = Agent(FunctionModel(_model), name="charger")


@agent.tool_plain
@tool.write(store=os.environ.get("ENGINE_STORE"), checkpoint=True, registry=None)
def charge_card(order_id: str) -> str:
    """Charge an order's card."""
    first = not os.path.exists(os.path.join(DIRECTORY, "failed"))
    if first and os.environ.get("ENGINE_FAIL") == "before":
        open(os.path.join(DIRECTORY, "failed"), "w").close()
        raise ConnectionError("the payments API refused the connection")
    side_effect_started()
    note(DIRECTORY, "ledger", order_id)
    if first and os.environ.get("ENGINE_FAIL") == "after":
        open(os.path.join(DIRECTORY, "failed"), "w").close()
        raise ConnectionError("timed out after the charge was sent")
    return "ch_" + order_id


durable = TemporalAgent(agent)


@workflow.defn
class ChargeWorkflow:
    @workflow.run
    async def run(self, prompt: str) -> str:
        result = await durable.run(prompt)
        return str(result.output)
