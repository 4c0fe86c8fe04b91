"""The conversation loop: session state machine, turn-taking, STT, LLM, persona. No transport code."""
