"""LLM calls: the traced OpenAI client, rate limits, fallbacks and the offline model."""
