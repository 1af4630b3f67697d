"""retrysafe inside agent frameworks: one module per framework, each imported only by you.

- :mod:`retrysafe.integrations.mcp`: FastMCP and the MCP SDK's server;
- :mod:`retrysafe.integrations.pydantic_ai`: Pydantic AI agents;
- :mod:`retrysafe.integrations.openai_agents`: the OpenAI Agents SDK;
- :mod:`retrysafe.integrations.langchain`: LangChain tools and LangGraph graphs.

Each binds the framework's conversation to :func:`retrysafe.session` for every tool call (so
writes are recorded per conversation, never across them) through the hook the framework
offers, and registers retrysafe tools with their effect's annotations and without the
``idempotency_key`` parameter. Install the framework's extra: ``pip install
retrysafe[mcp]``, ``[pydantic-ai]``, ``[openai-agents]`` or ``[langchain]``.
"""
