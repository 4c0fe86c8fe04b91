"""ChatLLM against the real embedded SmolLM2 server, and against small broken servers for the faults."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from local_http import serve_post

from agent.llm import (
    BACKOFF_MAX_S,
    ChatHistory,
    ChatLLM,
    LLMError,
    _SpecialTokenFilter,
    backoff_s,
)
from agent.persona import LLMConfig
from integrations.llm.local_server import MODEL_ALIAS, LocalLLMServer, free_port

module_loop = pytest.mark.asyncio(loop_scope="module")
# llama-cpp-python's log line for a request whose prompt starts with the cached one (reused, evaluated).
PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")


def config(**overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "model": MODEL_ALIAS,
        "system_prompt": "You are a helpful assistant. Answer in one short sentence.",
        "greeting": "Hello!",
        "fallback_line": "Sorry, I lost my train of thought.",
        "temperature": 0.0,
        "max_tokens": 24,
        "timeout_s": 2.0,
        "max_retries": 2,
    }
    values.update(overrides)
    return LLMConfig(**values)


QUESTION = [{"role": "user", "content": "What is the capital of France? One word."}]


async def collect(llm: ChatLLM, messages: list[dict[str, str]] = QUESTION) -> list[str]:
    return [delta async for delta in llm.stream(messages)]


async def collect_until_error(llm: ChatLLM) -> tuple[list[str], LLMError]:
    """The deltas yielded before the stream failed, and the failure."""
    got: list[str] = []
    with pytest.raises(LLMError) as info:
        async for delta in llm.stream(QUESTION):
            got.append(delta)
    return got, info.value


# ---------------------------------------------------------------------------------------------------
# Fake OpenAI-compatible servers (for the faults a real server does not produce on demand)
# ---------------------------------------------------------------------------------------------------


def sse_chunk(content: str | None = None, role: str | None = None) -> bytes:
    delta: dict[str, str] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    chunk = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def sse_body(tokens: list[str]) -> bytes:
    return sse_chunk(role="assistant") + b"".join(sse_chunk(t) for t in tokens) + b"data: [DONE]\n\n"


class FakeServer:
    """An aiohttp app on 127.0.0.1 at a free port; counts requests and keeps their JSON bodies."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()  # set at teardown so hanging handlers can finish
        self.base_url = ""

    @property
    def count(self) -> int:
        return len(self.requests)

    async def stream(self, request: web.Request, body: bytes, *, hang: bool = False) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        if hang:
            await self.release.wait()
        return response


FakeHandler = Callable[[FakeServer, web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def fake_server(
    handler: Callable[[FakeServer, web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[FakeServer]:
    server = FakeServer()

    async def endpoint(request: web.Request) -> web.StreamResponse:
        server.requests.append(await request.json())
        return await handler(server, request)

    async with serve_post("/v1/chat/completions", endpoint) as base_url:
        server.base_url = base_url
        try:
            yield server
        finally:
            server.release.set()


# ---------------------------------------------------------------------------------------------------
# The real embedded server
# ---------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded() -> AsyncIterator[LocalLLMServer]:
    async with LocalLLMServer() as server:
        yield server


@module_loop
async def test_embedded_server_streams_an_answer(embedded: LocalLLMServer) -> None:
    llm = ChatLLM(config(timeout_s=30.0), embedded.base_url, seed=7)  # a cold server on a busy machine
    try:
        history = ChatHistory(llm.config.system_prompt, llm.config.history_turns)
        history.add_user(QUESTION[0]["content"])
        deltas = await collect(llm, history.messages())
    finally:
        await llm.aclose()
    text = "".join(deltas)
    assert text.strip(), deltas
    assert len(deltas) >= 3, deltas  # streamed, not one block
    assert text == text.lstrip()
    assert "<|" not in text


@module_loop
async def test_embedded_server_follows_a_conversation(embedded: LocalLLMServer) -> None:
    llm = ChatLLM(config(max_tokens=16, temperature=0.7, timeout_s=30.0), embedded.base_url, seed=1)
    history = ChatHistory("You are a friendly librarian.", max_turns=2)
    try:
        for question in ["Hello!", "Do you have books about cats?", "Thanks. Where are they?"]:
            history.add_user(question)
            reply = "".join(await collect(llm, history.messages()))
            assert reply.strip()
            history.add_assistant(reply)
    finally:
        await llm.aclose()
    # Between turns the window already leaves room for the next question (max_turns=2 in a prompt).
    roles = [m["role"] for m in history.messages()]
    assert roles == ["system", "user", "assistant"]


@module_loop
async def test_a_warmed_prompt_leaves_only_the_new_question_to_evaluate(embedded: LocalLLMServer) -> None:
    """The server's own log: after ChatLLM.warm, the next request reuses the whole conversation from
    llama.cpp's KV cache (here the window slides every turn, which would otherwise change it all)."""
    llm = ChatLLM(config(max_tokens=8, timeout_s=60.0), embedded.base_url, seed=1, warm_prompts=True)
    history = ChatHistory("You are a friendly librarian.", max_turns=2)
    hits: list[tuple[int, int]] = []
    try:
        for question in ["Hello!", "Do you have books about cats?", "Thanks. Where are they?"]:
            history.add_user(question)
            seen = len(embedded.log_tail(10**6))
            reply = "".join(await collect(llm, history.messages()))
            logged = "\n".join(embedded.log_tail(10**6)[seen:])
            hits += [(int(a), int(b)) for a, b in PREFIX_HIT.findall(logged)]
            history.add_assistant(reply)
            await llm.warm(history.messages())
    finally:
        await llm.aclose()
    reused, evaluated = hits[-1]  # the third question's request
    assert reused > 30 and evaluated <= 20, hits  # the question and the chat template's few tokens


async def test_warming_is_off_unless_asked_and_never_raises() -> None:
    port = free_port()  # nothing listens there
    cold = ChatLLM(config(), f"http://127.0.0.1:{port}/v1")
    warm = ChatLLM(config(timeout_s=1.0), f"http://127.0.0.1:{port}/v1", warm_prompts=True)
    try:
        await cold.warm(QUESTION)  # no request at all
        await warm.warm(QUESTION)  # the request fails: logged, not raised
    finally:
        await cold.aclose()
        await warm.aclose()


@module_loop
async def test_closing_the_stream_early_releases_the_request(embedded: LocalLLMServer) -> None:
    llm = ChatLLM(config(max_tokens=64, timeout_s=30.0), embedded.base_url)
    try:
        stream = llm.stream(QUESTION)
        first = await anext(stream)
        await stream.aclose()
        assert first
        # The same client still works after an abandoned stream (barge-in).
        assert "".join(await collect(llm)).strip()
    finally:
        await llm.aclose()


# ---------------------------------------------------------------------------------------------------
# ChatHistory
# ---------------------------------------------------------------------------------------------------


def test_history_keeps_the_system_prompt_and_the_last_turns_in_order() -> None:
    history = ChatHistory("Be brief.", max_turns=2)
    for i in range(5):
        history.add_user(f"question {i}")
        history.add_assistant(f"answer {i}")
    history.add_user("question 5")
    assert history.messages() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "question 4"},
        {"role": "assistant", "content": "answer 4"},
        {"role": "user", "content": "question 5"},
    ]


def test_the_slid_window_is_known_before_the_reply_that_slides_it() -> None:
    """What every later prompt starts with, known while the reply is spoken: the server can evaluate
    it then, not after the reply while the user already speaks."""
    history = ChatHistory("sys", max_turns=6)  # slides by three turns beyond the one that overflows
    for i in range(5):
        history.add_user(f"question {i}")
        assert history.slid_for_reply() is None  # its reply leaves room: the prompt only grows
        history.add_assistant(f"answer {i}")
    history.add_user("question 5")
    slid = history.slid_for_reply()
    assert slid == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "question 4"},
        {"role": "assistant", "content": "answer 4"},
        {"role": "user", "content": "question 5"},
    ]
    history.add_assistant("answer 3", generated=True)
    assert history.messages()[: len(slid)] == slid
    assert history.messages()[len(slid) :] == [{"role": "assistant", "content": "answer 3"}]
    assert history.slid_for_reply() is None  # no question waits for a reply


def test_history_window_never_starts_with_an_assistant_message() -> None:
    history = ChatHistory("sys", max_turns=1)
    history.add_assistant("Welcome to the library!")  # the greeting, before anyone spoke
    assert [m["role"] for m in history.messages()] == ["system"]
    history.add_user("hi")
    history.add_assistant("hello")
    history.add_user("where are the books?")
    assert history.messages()[1:] == [{"role": "user", "content": "where are the books?"}]


def test_history_merges_repeated_roles_and_skips_empty_text() -> None:
    history = ChatHistory("sys", max_turns=3)
    history.add_user("I need")
    history.add_user("a book")  # the user spoke twice while the avatar said nothing
    history.add_assistant("")  # barge-in before a word was played
    history.add_assistant("Which")
    history.add_assistant("one?")
    assert history.messages()[1:] == [
        {"role": "user", "content": "I need a book"},
        {"role": "assistant", "content": "Which one?"},
    ]
    messages = history.messages()
    messages[1]["content"] = "changed"
    assert history.messages()[1]["content"] == "I need a book"  # a copy, not the window itself


def test_a_reply_that_repeats_an_earlier_one_leaves_the_prompt_with_it() -> None:
    """The embedded 135M model copies a reply it sees in its prompt; two copies and it says nothing else."""
    history = ChatHistory("sys", max_turns=8)
    history.add_user("When do you open?")
    history.add_assistant("The thing you're asking about is there's a card.", generated=True)
    history.add_user("Are you open on Sunday?")
    # Cut by a barge-in: the start of the first.
    history.add_assistant("The thing you're asking about is", generated=True)
    history.add_user("Can I print?")
    assert history.messages()[1:] == [{"role": "user", "content": "Can I print?"}]
    history.add_assistant("Printing costs ten cents a page.", generated=True)
    history.add_user("And in colour?")
    history.add_assistant("Printing costs fifty cents a page in colour.", generated=True)  # 3 words: kept
    history.add_user("Thanks!")
    history.add_assistant("You're welcome.", generated=True)
    assert [m["content"] for m in history.messages() if m["role"] == "assistant"] == [
        "Printing costs ten cents a page.",
        "Printing costs fifty cents a page in colour.",
        "You're welcome.",
    ]
    assert all(set(m) == {"role", "content"} for m in history.messages())  # the mark is never sent


def test_curated_answers_and_a_forms_questions_may_repeat() -> None:
    history = ChatHistory("sys", max_turns=8)
    ask = "Sorry, I didn't catch your date of birth. What is your date of birth?"
    for said in ("tomorrow maybe", "uh", "hmm"):
        history.add_user(said)
        history.add_assistant(ask)  # a form asking again: it counts these in the history
    assert [m["content"] for m in history.messages()].count(ask) == 3


def test_backoff_doubles_up_to_the_cap_with_small_jitter() -> None:
    delays = [backoff_s(i) for i in range(6)]
    for delay, base in zip(delays, [0.25, 0.5, 1.0, 2.0, 2.0, 2.0], strict=True):
        assert base <= delay <= base * 1.1
    assert max(delays) <= BACKOFF_MAX_S * 1.1
    assert delays == [backoff_s(i) for i in range(6)]  # deterministic


def test_special_token_filter_strips_tokens_split_across_deltas() -> None:
    special = _SpecialTokenFilter()
    pieces = ["Hi", " there<|", "im_", "start|>", ", 3 < 4", "!<|im", "_end|>", "user: more"]
    out = "".join(special.feed(p) for p in pieces) + special.flush()
    assert out == "Hi there, 3 < 4!"
    assert special.ended


# ---------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------


async def test_sends_the_configured_parameters_and_streams_the_deltas() -> None:
    async def ok(server: FakeServer, request: web.Request) -> web.StreamResponse:
        return await server.stream(request, sse_body(["Hi", " there", "."]))

    async with fake_server(ok) as server:
        llm = ChatLLM(config(temperature=0.3, max_tokens=42), server.base_url, api_key="k", seed=5)
        try:
            assert await collect(llm) == ["Hi", " there", "."]
        finally:
            await llm.aclose()
    sent = server.requests[0]
    assert sent["model"] == MODEL_ALIAS
    assert sent["stream"] is True
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.3, 42, 5)
    assert sent["messages"] == QUESTION


async def test_connection_refused_fails_after_every_retry() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = ChatLLM(config(max_retries=2), url)
    try:
        _, error = await collect_until_error(llm)
    finally:
        await llm.aclose()
    assert error.attempts == 3
    assert url in str(error)
    assert "3 attempts" in str(error)


async def test_503_is_retried_until_a_valid_stream_arrives() -> None:
    async def flaky(server: FakeServer, request: web.Request) -> web.StreamResponse:
        if server.count <= 2:
            return web.json_response({"error": {"message": "loading model"}}, status=503)
        return await server.stream(request, sse_body(["Pa", "ris"]))

    async with fake_server(flaky) as server:
        llm = ChatLLM(config(max_retries=2), server.base_url)
        try:
            assert await collect(llm) == ["Pa", "ris"]
        finally:
            await llm.aclose()
    assert server.count == 3  # max_retries failures, then the success


async def test_503_every_time_gives_up_after_max_retries_plus_one_attempts() -> None:
    async def down(server: FakeServer, request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "overloaded"}}, status=503)

    async with fake_server(down) as server:
        llm = ChatLLM(config(max_retries=2), server.base_url)
        try:
            _, error = await collect_until_error(llm)
        finally:
            await llm.aclose()
    assert server.count == 3
    assert error.attempts == 3
    assert "503" in str(error) and "overloaded" in str(error)


async def test_429_is_retried() -> None:
    async def limited(server: FakeServer, request: web.Request) -> web.StreamResponse:
        if server.count == 1:
            return web.json_response({"error": {"message": "slow down"}}, status=429)
        return await server.stream(request, sse_body(["ok"]))

    async with fake_server(limited) as server:
        llm = ChatLLM(config(max_retries=1), server.base_url)
        try:
            assert await collect(llm) == ["ok"]
        finally:
            await llm.aclose()
    assert server.count == 2


async def test_401_names_the_api_key_variable_and_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_API_KEY", "sk-wrong")

    async def auth(server: FakeServer, request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"] == "Bearer sk-wrong"
        return web.json_response({"error": {"message": "invalid api key"}}, status=401)

    async with fake_server(auth) as server:
        llm = ChatLLM(config(api_key_env="TEST_LLM_API_KEY", max_retries=3), server.base_url)
        try:
            _, error = await collect_until_error(llm)
        finally:
            await llm.aclose()
    assert server.count == 1
    assert "TEST_LLM_API_KEY" in str(error)
    assert "401" in str(error)


async def test_400_is_not_retried() -> None:
    async def bad(server: FakeServer, request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "context too long"}}, status=400)

    async with fake_server(bad) as server:
        llm = ChatLLM(config(max_retries=3), server.base_url)
        try:
            _, error = await collect_until_error(llm)
        finally:
            await llm.aclose()
    assert server.count == 1
    assert "context too long" in str(error)


def test_missing_api_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_LLM_API_KEY", raising=False)
    with pytest.raises(LLMError, match="TEST_LLM_API_KEY"):
        ChatLLM(config(api_key_env="TEST_LLM_API_KEY"), "https://api.example.com/v1")


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Accepts connections and never answers; yields the base URL and a connection counter."""
    release = asyncio.Event()
    connections: list[int] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", connections
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_times_out() -> None:
    async with silent_server() as (url, connections):
        llm = ChatLLM(config(timeout_s=0.5, max_retries=1), url)
        try:
            _, error = await collect_until_error(llm)
        finally:
            await llm.aclose()
    assert "timeout_s = 0.5 s" in str(error)
    assert "first token" in str(error)
    assert error.attempts == 2 and len(connections) == 2


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/html", b"<html><body><h1>Welcome to nginx!</h1></body></html>", "HTML page"),
        ("text/event-stream", b"data: {not json\n\n", "not a chat completion stream"),
        ("text/event-stream", b'data: {"hello": "world"}\n\n', "not a chat completion chunk"),
        ("text/event-stream", b"\xff\xfe\x00garbage\x80\x81\n\n", "not a chat completion stream"),
        ("application/json", b'{"choices": [{"message": {"content": "Hi"}}]}', "no stream events"),
    ],
    ids=["html", "bad-json", "not-a-chunk", "binary", "not-streamed"],
)
async def test_a_reply_that_is_not_a_stream_fails_without_retry(
    content_type: str, body: bytes, expected: str
) -> None:
    async def garbage(server: FakeServer, request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=200, headers={"Content-Type": content_type})

    async with fake_server(garbage) as server:
        llm = ChatLLM(config(max_retries=2), server.base_url)
        try:
            got, error = await collect_until_error(llm)
        finally:
            await llm.aclose()
    assert got == []
    assert expected in str(error)
    assert server.count == 1


async def test_a_stream_that_stalls_keeps_the_tokens_already_yielded() -> None:
    async def stall(server: FakeServer, request: web.Request) -> web.StreamResponse:
        body = sse_chunk(role="assistant") + sse_chunk("Hello") + sse_chunk(" there")
        return await server.stream(request, body, hang=True)

    async with fake_server(stall) as server:
        llm = ChatLLM(config(timeout_s=0.5, max_retries=2), server.base_url)
        try:
            got, error = await collect_until_error(llm)
        finally:
            await llm.aclose()
    assert got == ["Hello", " there"]
    assert "stalled" in str(error) and "timeout_s = 0.5 s" in str(error) and "2 tokens" in str(error)
    assert server.count == 1  # never retried once words were given out


async def test_a_connection_dropped_mid_stream_keeps_the_tokens_already_yielded() -> None:
    async def drop(server: FakeServer, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse_chunk("One") + sse_chunk(" two"))
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    async with fake_server(drop) as server:
        llm = ChatLLM(config(max_retries=2), server.base_url)
        try:
            got, error = await collect_until_error(llm)
        finally:
            await llm.aclose()
    assert got == ["One", " two"]
    assert "broke after 2 tokens" in str(error)
    assert server.count == 1


async def test_an_empty_reply_is_an_error() -> None:
    async def empty(server: FakeServer, request: web.Request) -> web.StreamResponse:
        return await server.stream(request, sse_body(["", "  ", "<|im_end|>"]))

    async with fake_server(empty) as server:
        llm = ChatLLM(config(), server.base_url)
        try:
            _, error = await collect_until_error(llm)
        finally:
            await llm.aclose()
    assert "empty reply" in str(error)


async def test_leaked_special_tokens_are_stripped_and_end_the_reply() -> None:
    async def leaky(server: FakeServer, request: web.Request) -> web.StreamResponse:
        tokens = [" ", " Paris", "<|im_", "end|>", "<|im_start|>", "user\nAnd Spain?"]
        return await server.stream(request, sse_body(tokens))

    async with fake_server(leaky) as server:
        llm = ChatLLM(config(), server.base_url)
        try:
            assert "".join(await collect(llm)) == "Paris"
        finally:
            await llm.aclose()


def test_the_history_window_slides_in_steps_so_prompts_share_a_prefix() -> None:
    history = ChatHistory("sys", max_turns=8)
    prompts = []
    for i in range(14):
        history.add_user(f"question {i}")
        prompts.append(history.messages())
        history.add_assistant(f"answer {i}")
    users = [sum(m["role"] == "user" for m in p) for p in prompts]
    assert users == [1, 2, 3, 4, 5, 6, 7, 8, 4, 5, 6, 7, 8, 4]  # over the limit: back to 4 turns at once
    # A prompt that does not extend the one before (the prompt cache evaluates it all again) is rare.
    slides = [i for i in range(1, 14) if prompts[i][: len(prompts[i - 1])] != prompts[i - 1]]
    assert slides == [8, 13]


@pytest.mark.parametrize("turns", [2, 3, 4])
def test_a_small_history_window_still_holds_the_last_exchange(turns: int) -> None:
    history = ChatHistory("sys", max_turns=turns)
    for i in range(6):
        history.add_user(f"question {i}")
        history.add_assistant(f"answer {i}")
        assert history.messages()[-2:] == [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]


def test_the_history_between_turns_is_the_start_of_the_next_prompt() -> None:
    history = ChatHistory("sys", max_turns=8)
    for i in range(14):
        between = history.messages()  # what ChatLLM.warm evaluates while the user speaks
        history.add_user(f"question {i}")
        assert history.messages() == [*between, {"role": "user", "content": f"question {i}"}], i
        history.add_assistant(f"answer {i}")
