"""OpenAI-compatible LLM endpoints, including the embedded llama.cpp server."""
