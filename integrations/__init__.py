"""Adapters to the outside: LiveKit, MQTT, LLM endpoints, the local browser page, files, the CLI."""
