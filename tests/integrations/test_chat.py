"""``dyad chat``: one question with ``--text`` (one JSON line), the interactive prompt, and the embedded
LLM started only when an answer needs it (the slow test uses the real SmolLM2 server)."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from agent.persona import load_persona
from integrations.cli.chat import TextChat
from integrations.cli.main import app

runner = CliRunner()
LIBRARY = "library_receptionist"


def ask(persona: str, text: str) -> dict[str, Any]:
    result = runner.invoke(app, ["chat", "--persona", persona, "--text", text])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stdout.splitlines() if x.strip()]
    data: dict[str, Any] = json.loads(line)
    assert {"answer", "kind", "source", "score", "timing_ms"} <= set(data)
    return data


def test_a_curated_question_is_answered_directly_without_starting_the_llm() -> None:
    data = ask(LIBRARY, "Do you have wifi here?")
    assert data["kind"] == "direct" and data["source"] == "Do you have wifi?"
    assert "CentralLibrary-Guest" in data["answer"] and data["score"] >= 0.6
    assert "llm_start_ms" not in data  # the embedded server was never started


def test_an_off_topic_question_gets_the_unknown_line() -> None:
    data = ask(LIBRARY, "What is the capital of France?")
    assert data["kind"] == "unknown" and data["source"] is None
    assert data["answer"] == load_persona(LIBRARY).knowledge.unknown_line


def test_a_trigger_phrase_runs_the_declared_action_and_reports_its_event() -> None:
    data = ask(LIBRARY, "Can you print me a map of the library?")
    assert data["kind"] == "action" and data["source"] == "action:print_floor_map"
    (event,) = data["events"]
    assert event["type"] == "action" and event["name"] == "print_floor_map" and event["turn"] == 1


def test_the_interactive_prompt_keeps_the_conversation_until_quit() -> None:
    questions = "Do you have wifi?\n\nI want to speak to a real human\nquit\nnever asked\n"
    result = runner.invoke(app, ["chat", "--persona", LIBRARY], input=questions)
    assert result.exit_code == 0, result.output
    persona = load_persona(LIBRARY)
    assert "CentralLibrary-Guest" in result.stdout
    assert persona.knowledge.handoff_line in result.stdout
    assert '"type": "handoff_requested"' in result.stdout
    assert result.stdout.count("you> ") == 4  # the blank line is asked again; nothing after quit


def test_a_bad_persona_is_an_error_naming_it() -> None:
    result = runner.invoke(app, ["chat", "--persona", "no_such_persona", "--text", "hi"])
    assert result.exit_code == 2 and "no_such_persona" in result.output


async def test_the_history_window_carries_over_between_questions() -> None:
    async with TextChat(load_persona(LIBRARY)) as chat:
        first = await chat.ask("Do you have wifi?")
        second = await chat.ask("Can I talk to a person?")
    assert first.kind == "direct" and second.kind == "handoff" and chat.turns == 2
    assert [m["role"] for m in chat.history.messages()] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert second.events[0]["type"] == "handoff_requested" and second.events[0]["turn"] == 2


def test_a_persona_without_facts_asks_the_embedded_llm() -> None:
    """Slow: starts the real embedded SmolLM2 server."""
    data = ask("default", "Hello, who are you?")
    assert data["kind"] == "llm" and data["answer"].strip()
    assert data["llm_start_ms"] > 0 and data["timing_ms"] > 0
