"""The embedded llama.cpp server as a child process, reached through the openai client."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import AsyncOpenAI

from integrations.llm.local_server import LOCAL_API_KEY, MODEL_ALIAS, LocalLLMServer, LocalServerError


async def test_streams_a_reply_and_stops_cleanly() -> None:
    server = LocalLLMServer()
    async with server:
        client = AsyncOpenAI(base_url=server.base_url, api_key=LOCAL_API_KEY)
        stream = await client.chat.completions.create(
            model=MODEL_ALIAS,
            messages=[{"role": "user", "content": "What colour is the sky? One word."}],
            max_tokens=8,
            stream=True,
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        await client.close()
        process = server._process
        assert process is not None
    assert "".join(pieces).strip()
    assert process.returncode is not None  # the child is gone


async def test_bad_model_file_fails_with_the_server_log(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not gguf")
    server = LocalLLMServer(bogus, startup_timeout_s=60)
    with pytest.raises(LocalServerError, match="exited with code"):
        await server.start()
    assert server._process is None
