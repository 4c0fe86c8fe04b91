"""OpenAI function calling and the grounding check of LLM answers.

The endpoint is a real HTTP server on 127.0.0.1 that speaks the chat-completions streaming protocol with
tool calls (the embedded llama.cpp server does not call tools reliably, and no hosted model can be
reached from the tests): it records each request and answers from a script.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from local_http import serve_post
from test_session_answers import UNKNOWN, agent_lines, kiosk_persona, spoken
from test_session_states import ScriptedLLM

from agent.events import ActionRequested, HandoffRequested, TurnMetrics
from agent.knowledge import ActionAnswer, Answer, Answerer, LLMAnswer, UnknownAnswer
from agent.llm import MAX_TOOL_ROUNDS, ChatLLM, LLMError
from agent.persona import Persona
from integrations.cli.chat import TextChat

NOW = datetime(2025, 3, 3, 14, 5, tzinfo=UTC)  # a Monday, 2:05 pm in London
CHECK_IN = {
    "name": "check_in",
    "description": "Check a patient in for today's appointment.",
    "say": "Thank you, you're checked in.",
    "parameters": {"full_name": "the patient's full name", "date_of_birth": "YYYY-MM-DD"},
}
QUESTION = "Is the wifi free for guests, and what is it called?"  # found in the facts, not direct


# ---------------------------------------------------------------------------------------------------
# An OpenAI-compatible server with tool calls
# ---------------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-tools",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake-tools",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def text_reply(*pieces: str) -> bytes:
    body = chunk({"role": "assistant"}) + b"".join(chunk({"content": p}) for p in pieces)
    return body + chunk({}, "stop") + b"data: [DONE]\n\n"


def tool_calls_reply(*calls: tuple[str, dict[str, Any]]) -> bytes:
    """Each call streamed as the API does: its id and name first, then its arguments in two pieces."""
    body = chunk({"role": "assistant", "content": None})
    for index, (name, args) in enumerate(calls):
        text = json.dumps(args)
        head = {"index": index, "id": f"call_{index}", "type": "function"}
        body += chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
            body += chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return body + chunk({}, "tool_calls") + b"data: [DONE]\n\n"


Script = Callable[[int, dict[str, Any]], Awaitable[web.StreamResponse | bytes]]


class ToolServer:
    """Answers request ``n`` (0-based) with ``script(n, body)``; keeps every request's JSON body."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""

    async def endpoint(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        reply = await self.script(len(self.requests) - 1, body)
        if isinstance(reply, web.StreamResponse):
            return reply
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(reply)
        return response


@asynccontextmanager
async def tool_server(script: Script) -> AsyncIterator[ToolServer]:
    server = ToolServer(script)
    async with serve_post("/v1/chat/completions", server.endpoint) as base_url:
        server.base_url = base_url
        yield server


def remote_persona(base_url: str, **knowledge: Any) -> Persona:
    """The kiosk persona behind an OpenAI-compatible endpoint, facts handed to the LLM."""
    data = kiosk_persona(passage_answers="llm", direct_threshold=0.99, **knowledge).model_dump()
    data["llm"]["base_url"] = base_url
    data["llm"]["model"] = "fake-tools"
    data["llm"]["timeout_s"] = 5.0
    data["knowledge"]["actions"].append(CHECK_IN)
    return Persona.model_validate(data)


async def reply_of(answerer: Answerer, llm: Any, answer: LLMAnswer) -> tuple[str, list[Answer]]:
    text, called = "", []
    async for item in answerer.reply(llm, answer):
        if isinstance(item, str):
            text += item
        else:
            called.append(item)
    return text, called


async def remote_reply(server: ToolServer) -> tuple[str, list[Answer], LLMAnswer]:
    """The question answered by the LLM at ``server`` with the remote persona's tools: the text, what
    the model called, and the answer the Answerer decided."""
    persona = remote_persona(server.base_url)
    answerer = Answerer(persona, now=lambda: NOW)
    answer = answerer.answer(QUESTION)
    assert isinstance(answer, LLMAnswer)
    llm = ChatLLM(persona.llm, server.base_url)
    try:
        text, called = await reply_of(answerer, llm, answer)
    finally:
        await llm.aclose()
    return text, called, answer


# ---------------------------------------------------------------------------------------------------
# ChatLLM: the protocol
# ---------------------------------------------------------------------------------------------------


async def test_a_tool_call_is_run_and_its_result_sent_back_before_the_reply_streams() -> None:
    async def script(n: int, body: dict[str, Any]) -> bytes:
        if n == 0:
            return tool_calls_reply(("lookup", {"city": "Paris"}), ("lookup", {"city": "Rome"}))
        return text_reply("Paris is ", "sunny.")

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    runs: list[tuple[str, dict[str, Any]]] = []

    def run_tool(name: str, arguments: str) -> str:
        runs.append((name, json.loads(arguments)))
        return f"weather {len(runs)}"

    async with tool_server(script) as server:
        persona = remote_persona(server.base_url)
        llm = ChatLLM(persona.llm, server.base_url)
        try:
            messages = [{"role": "user", "content": "Weather?"}]
            text = "".join([d async for d in llm.stream(messages, tools, run_tool)])
        finally:
            await llm.aclose()

    assert text == "Paris is sunny."
    assert runs == [("lookup", {"city": "Paris"}), ("lookup", {"city": "Rome"})]
    first, second = server.requests
    assert first["tools"] == tools and first["stream"] is True
    assert second["messages"][:1] == [{"role": "user", "content": "Weather?"}]
    assistant, result_0, result_1 = second["messages"][1:]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["lookup", "lookup"]
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {"city": "Rome"}
    assert result_0 == {"role": "tool", "tool_call_id": "call_0", "content": "weather 1"}
    assert result_1 == {"role": "tool", "tool_call_id": "call_1", "content": "weather 2"}


async def test_a_model_that_keeps_calling_tools_is_asked_once_more_without_them() -> None:
    async def script(n: int, body: dict[str, Any]) -> bytes:
        if "tools" in body:
            return tool_calls_reply(("lookup", {}))
        return text_reply("Done.")

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    async with tool_server(script) as server:
        llm = ChatLLM(remote_persona(server.base_url).llm, server.base_url)
        try:
            messages = [{"role": "user", "content": "Go"}]
            text = "".join([d async for d in llm.stream(messages, tools, lambda name, args: "ok")])
        finally:
            await llm.aclose()
    assert text == "Done."
    assert len(server.requests) == MAX_TOOL_ROUNDS + 1 and "tools" not in server.requests[-1]


async def test_a_failed_request_after_a_tool_call_is_retried_without_running_the_tool_again() -> None:
    async def script(n: int, body: dict[str, Any]) -> web.StreamResponse | bytes:
        if n == 0:
            return tool_calls_reply(("lookup", {}))
        if n == 1:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return text_reply("Fine.")

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    runs: list[str] = []

    def run_tool(name: str, arguments: str) -> str:
        runs.append(name)
        return "ok"

    async with tool_server(script) as server:
        llm = ChatLLM(remote_persona(server.base_url).llm, server.base_url)
        try:
            messages = [{"role": "user", "content": "Go"}]
            text = "".join([d async for d in llm.stream(messages, tools, run_tool)])
        finally:
            await llm.aclose()
    assert text == "Fine." and runs == ["lookup"] and len(server.requests) == 3


async def test_tools_without_a_runner_are_refused() -> None:
    llm = ChatLLM(kiosk_persona().llm, "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="run_tool"):
        await anext(llm.stream([], [{"type": "function"}]))
    await llm.aclose()


# ---------------------------------------------------------------------------------------------------
# The Answerer: the persona's tools and actions, and grounded numbers
# ---------------------------------------------------------------------------------------------------


async def test_the_llm_calls_a_declared_action_with_its_arguments() -> None:
    async def script(n: int, body: dict[str, Any]) -> bytes:
        if n == 0:
            args = {"full_name": "Ada Lovelace", "date_of_birth": "1815-12-10"}
            return tool_calls_reply(("check_in", args))
        return text_reply("You're checked in, Ada. ", "Please take a seat.")

    async with tool_server(script) as server:
        text, called, answer = await remote_reply(server)
    names = {spec["function"]["name"] for spec in answer.tools}
    assert {"time", "hours", "open_now", "handoff", "print_ticket", "check_in"} <= names

    assert text == "You're checked in, Ada. Please take a seat."
    (action,) = called
    assert isinstance(action, ActionAnswer) and action.name == "check_in"
    assert action.args == {"full_name": "Ada Lovelace", "date_of_birth": "1815-12-10"}
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "Thank you, you're checked in."


async def test_a_tool_result_grounds_the_numbers_of_the_reply() -> None:
    async def script(n: int, body: dict[str, Any]) -> bytes:
        if n == 0:
            return tool_calls_reply(("time", {}))
        return text_reply("It is 2:05 ", "pm now.")

    async with tool_server(script) as server:
        text, called, _ = await remote_reply(server)
    # 2:05 is in no fact: the time tool's result grounds it.
    assert server.requests[1]["messages"][-1]["content"] == "It's 2:05 pm."
    assert text == "It is 2:05 pm now." and [a.kind for a in called] == ["tool"]


async def test_a_bad_call_goes_back_to_the_model_as_an_error() -> None:
    async def script(n: int, body: dict[str, Any]) -> bytes:
        if n == 0:
            return tool_calls_reply(("check_in", {"full_name": "Ada Lovelace"}))
        return text_reply("What is your date of birth?")

    async with tool_server(script) as server:
        text, called, _ = await remote_reply(server)
    assert text == "What is your date of birth?" and called == []
    assert "date_of_birth" in server.requests[1]["messages"][-1]["content"]


async def test_an_invented_number_ends_the_reply_with_the_unknown_line() -> None:
    llm = ScriptedLLM("The guest wifi is KioskGuest. It costs 5 dollars an hour. Enjoy.", ttft_s=0.0)
    answerer = Answerer(kiosk_persona(passage_answers="llm", direct_threshold=0.99), now=lambda: NOW)
    answer = answerer.answer(QUESTION)
    assert isinstance(answer, LLMAnswer) and answer.tools == ()  # the embedded model gets no tools
    text, called = await reply_of(answerer, llm, answer)
    assert text == f"The guest wifi is KioskGuest. {UNKNOWN}"
    assert [type(a) for a in called] == [UnknownAnswer]


async def test_numbers_from_the_conversation_are_grounded() -> None:
    llm = ScriptedLLM("The wifi is KioskGuest, for all 3 of you.", ttft_s=0.0)
    answerer = Answerer(kiosk_persona(passage_answers="llm", direct_threshold=0.99), now=lambda: NOW)
    history = [{"role": "user", "content": "We are 3 people."}, {"role": "assistant", "content": "Hello!"}]
    answer = answerer.answer(QUESTION, history)
    assert isinstance(answer, LLMAnswer)
    text, called = await reply_of(answerer, llm, answer)
    assert text == "The wifi is KioskGuest, for all 3 of you." and called == []


# ---------------------------------------------------------------------------------------------------
# The Session and `dyad chat`: the LLM's actions are the rule path's events
# ---------------------------------------------------------------------------------------------------


async def test_the_session_publishes_an_action_the_llm_called() -> None:
    async def script(n: int, body: dict[str, Any]) -> bytes:
        if n == 0:
            return tool_calls_reply(("handoff", {"reason": "wants a person"}), ("print_ticket", {}))
        return text_reply("Someone is coming, and here is your ticket.")

    async with tool_server(script) as server:
        persona = remote_persona(server.base_url)
        llm = ChatLLM(persona.llm, server.base_url)
        line = spoken(persona, "", llm)
        try:
            await line.session.start()
            await line.session.submit_text(QUESTION)
            await line.run(4.0)
            await line.close()
        finally:
            await llm.aclose()

    (handoff,) = line.of(HandoffRequested)
    (action,) = line.of(ActionRequested)
    assert handoff.reason == "wants a person" and handoff.turn == 1
    assert action.name == "print_ticket" and action.turn == 1
    assert agent_lines(line) == ["Someone is coming, and here is your ticket."]
    assert line.of(TurnMetrics)[0].answer == "llm"


async def test_the_session_says_the_unknown_line_for_an_invented_price() -> None:
    llm = ScriptedLLM("It costs 4 dollars.", ttft_s=0.05)
    line = spoken(kiosk_persona(passage_answers="llm", direct_threshold=0.99), "", llm)
    await line.session.start()
    await line.session.submit_text(QUESTION)
    await line.run(3.0)
    await line.close()
    assert agent_lines(line) == [UNKNOWN]


async def test_dyad_chat_reports_the_events_of_the_llms_calls() -> None:
    async def script(n: int, body: dict[str, Any]) -> bytes:
        if n == 0:
            return tool_calls_reply(("print_ticket", {}))
        return text_reply("Here is your ticket.")

    async with tool_server(script) as server, TextChat(remote_persona(server.base_url)) as chat:
        reply = await chat.ask(QUESTION)
    assert reply.answer == "Here is your ticket." and reply.kind == "llm"
    assert [e["type"] for e in reply.events] == ["action"] and reply.events[0]["name"] == "print_ticket"


async def test_an_llm_error_before_any_text_still_raises() -> None:
    async def script(n: int, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"error": {"message": "bad model"}}, status=400)

    async with tool_server(script) as server:
        with pytest.raises(LLMError, match="bad model"):
            await remote_reply(server)
