"""The embedded llama.cpp server as a child process, reached through the openai client."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from avatar_core.workers import COMPUTE_NICENESS
from integrations.llm.local_server import (
    LOCAL_API_KEY,
    MODEL_ALIAS,
    LocalLLMServer,
    LocalServerError,
    PromptFigures,
    prompt_figures,
)


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
        # Compute: every thread of the server below ours, so the frame loops win the cores.
        tasks = Path(f"/proc/{process.pid}/task")
        if tasks.is_dir():
            lowered = min(19, os.getpriority(os.PRIO_PROCESS, 0) + COMPUTE_NICENESS)
            assert {os.getpriority(os.PRIO_PROCESS, int(t.name)) for t in tasks.iterdir()} == {lowered}
    assert "".join(pieces).strip()
    assert process.returncode is not None  # the child is gone


async def test_a_second_request_waits_rather_than_cutting_a_streaming_reply_short() -> None:
    """Sessions and avatars share one server: a request that arrives while another reply streams must
    not end that reply early (llama-cpp-python's ``interrupt_requests`` default sends [DONE] at once)."""

    async def ask(client: AsyncOpenAI, question: str, max_tokens: int) -> tuple[str, str | None]:
        """The streamed reply and why it ended ("length" when max_tokens ran out; None when cut)."""
        stream = await client.chat.completions.create(
            model=MODEL_ALIAS,
            messages=[{"role": "user", "content": question}],
            max_tokens=max_tokens,
            temperature=0.0,
            seed=0,
            stream=True,
        )
        text, finish = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        return text, finish

    story = "Tell me a long story about a lighthouse keeper and his cat."
    async with LocalLLMServer() as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key=LOCAL_API_KEY)
        try:
            first = asyncio.create_task(ask(client, story, 64))
            await asyncio.sleep(0.3)  # the first reply is streaming
            other, _ = await ask(client, "What colour is the sky? One word.", 4)
            story_text, finish = await first
        finally:
            await client.close()
    assert other.strip()
    assert finish == "length", story_text  # all 64 tokens, not cut when the second request came


async def test_bad_model_file_fails_with_the_server_log(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not gguf")
    server = LocalLLMServer(bogus, startup_timeout_s=60)
    with pytest.raises(LocalServerError, match="exited with code"):
        await server.start()
    assert server._process is None


def test_a_killed_app_leaves_no_server_behind(tmp_path: Path) -> None:
    """SIGKILL the process that started the server: the server ends by itself within a few seconds."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "server.pid"
    app = (
        "import asyncio, pathlib, time\n"
        "from integrations.llm.local_server import LocalLLMServer\n"
        "async def main():\n"
        "    server = LocalLLMServer()\n"
        "    await server.start()\n"
        f"    pathlib.Path({str(pid_file)!r}).write_text(str(server._process.pid))\n"
        "    await asyncio.sleep(600)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", app], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.2)
        assert pid_file.exists(), "the server did not start"
        server_pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                return  # gone (re-parented to an init that reaped it)
            if _is_zombie(server_pid):
                return  # exited; a zombie waits only for its new parent to reap it
            time.sleep(0.2)
        os.kill(server_pid, signal.SIGKILL)
        raise AssertionError("the server outlived the killed app")
    finally:
        if parent.poll() is None:
            parent.kill()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


def test_a_negative_cache_size_is_refused() -> None:
    with pytest.raises(ValueError, match="cache_mb"):
        LocalLLMServer(cache_mb=-1)


async def _second_turns(cache_mb: int) -> list[PromptFigures]:
    """Two conversations taking turns on one server (A, B, A, B): the figures of their second turns."""
    system = "You are a friendly guide at a museum of natural history. Answer in one short sentence."
    asks = {
        "A": ["Which dinosaur skeletons can I see on the first floor of the museum today?", "And the birds?"],
        "B": ["Is there a guided tour of the minerals and gemstones gallery this afternoon?", "How long?"],
    }
    conversations: dict[str, list[dict[str, str]]] = {name: [] for name in asks}
    second: list[PromptFigures] = []
    async with LocalLLMServer(cache_mb=cache_mb) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key=LOCAL_API_KEY)
        try:
            for turn in range(2):
                for name, questions in asks.items():
                    messages = conversations[name]
                    messages.append({"role": "user", "content": questions[turn]})
                    seen = len(server.log_tail(10**6))
                    reply = await client.chat.completions.create(
                        model=MODEL_ALIAS,
                        messages=[{"role": "system", "content": system}, *messages],  # type: ignore[list-item]
                        max_tokens=8,
                        temperature=0.0,
                        seed=0,
                    )
                    messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
                    if turn == 1:
                        second.append(prompt_figures(server.log_tail(10**6)[seen:]))
        finally:
            await client.close()
    return second


async def test_the_prompt_cache_lets_alternating_conversations_resume_their_own_prompts() -> None:
    """The server has one context: without the cache, A's second turn evaluates A's whole history again
    (B's request displaced it); with it, the server loads A's saved state and evaluates only what is new."""
    without = await _second_turns(cache_mb=0)
    with_cache = await _second_turns(cache_mb=64)
    for off, on in zip(without, with_cache, strict=True):
        assert off.evaluated_tokens is not None and on.evaluated_tokens is not None, (off.log, on.log)
        assert not off.cache_hit and on.cache_hit, (off.log, on.log)
        assert on.evaluated_tokens < off.evaluated_tokens, (off.log, on.log)
