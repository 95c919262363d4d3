"""agents_persist.openai_agents with the OpenAI Agents SDK."""
