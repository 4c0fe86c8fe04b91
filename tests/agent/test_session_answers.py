"""The Session answers from the persona's knowledge: curated answers, tools, actions and the hand-off are
spoken without the LLM; the LLM gets the facts; the turn's metrics say how each reply was decided.

A real Session and Engine on the virtual clock, with the scripted VAD/STT/voice of
``test_session_states`` and an LLM that fails the test if it is called where it must not be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_session_states import ScriptedLLM, Timeline
from test_session_states import persona as plain_persona

from agent.events import ActionRequested, AgentTranscript, HandoffRequested, TurnMetrics, UserTranscript
from agent.llm import LLMError
from agent.persona import Persona
from agent.session import Session

WIFI = "Yes, the guest wifi is called KioskGuest and needs no password."
UNKNOWN = "I don't know that, but the front desk can help."
TICKET = "Here is your ticket; it's printing now."


def kiosk_persona(**knowledge: Any) -> Persona:
    """The default persona with a few facts, opening hours and a ``print_ticket`` action."""
    data = plain_persona().model_dump()
    data["knowledge"] = {
        "faq": [
            {
                "question": "Do you have wifi?",
                "alternatives": ["Is there internet access here?"],
                "answer": WIFI,
            },
            {"question": "Where are the toilets?", "answer": "The toilets are next to the lifts."},
        ],
        "unknown_line": UNKNOWN,
        "timezone": "Europe/London",
        "opening_hours": {"monday": "09:00-17:00", "saturday": "closed"},
        "actions": [
            {
                "name": "print_ticket",
                "description": "Print a queue ticket at the kiosk printer.",
                "say": TICKET,
                "triggers": ["print me a ticket", "I need a queue ticket"],
            }
        ],
        **knowledge,
    }
    return Persona.model_validate(data)


@dataclass
class ForbiddenLLM:
    """An LLM that must not be asked: each call is recorded and fails."""

    calls: list[list[dict[str, str]]] = field(default_factory=list)

    async def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        self.calls.append(messages)
        raise AssertionError(f"the LLM was called: {messages[-1]}")
        yield ""  # pragma: no cover - makes this an async generator


@dataclass
class BrokenLLM:
    """An LLM endpoint that is down."""

    calls: int = 0

    async def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        self.calls += 1
        raise LLMError("cannot reach the LLM at http://127.0.0.1:9/v1")
        yield ""  # pragma: no cover - makes this an async generator


def spoken(persona: Persona, heard: str, llm: Any) -> Timeline:
    """A Timeline whose Session has ``persona`` and ``llm``: the user says ``heard`` from 0.5 to 2.0 s, or
    nothing when it is empty (the test types its question)."""
    line = Timeline([(0.5, 2.0)] if heard else [], heard=heard)
    line.session = Session(persona, line.engine, line.stt, llm, vad=line.vad)
    line.session.on(line.events.append)
    return line


def agent_lines(line: Timeline) -> list[str]:
    return [e.text for e in line.of(AgentTranscript) if e.final]


async def test_a_spoken_question_with_a_curated_answer_bypasses_the_llm() -> None:
    llm = ForbiddenLLM()
    line = spoken(kiosk_persona(), "Um, is there any internet access in here?", llm)
    await line.session.start()
    await line.run(8.0)
    await line.close()

    assert llm.calls == []
    assert agent_lines(line) == [WIFI]
    (metrics,) = line.of(TurnMetrics)
    assert metrics.answer == "direct" and metrics.answer_source == "Do you have wifi?"
    assert metrics.answer_score is not None and metrics.answer_score >= 0.6
    assert metrics.retrieval_ms is not None and metrics.first_token is None
    # The answer was decided in the end-of-turn silence and spoken right after the turn ended.
    assert metrics.first_audio is not None and metrics.first_audio <= metrics.end_of_turn + 40
    assert line.session.history.messages()[-1] == {"role": "assistant", "content": WIFI}


async def test_an_off_topic_question_gets_the_unknown_line() -> None:
    llm = ForbiddenLLM()
    line = spoken(kiosk_persona(), "Who won the football world cup in 1966?", llm)
    await line.session.start()
    await line.run(8.0)
    await line.close()

    assert llm.calls == []
    assert agent_lines(line) == [UNKNOWN]
    (metrics,) = line.of(TurnMetrics)
    assert metrics.answer == "unknown" and metrics.answer_source is None


async def test_a_declared_action_becomes_an_event_and_its_line_is_said() -> None:
    llm = ForbiddenLLM()
    line = spoken(kiosk_persona(), "Could you print me a ticket please?", llm)
    await line.session.start()
    await line.run(8.0)
    await line.close()

    assert llm.calls == []
    (action,) = line.of(ActionRequested)
    assert action.name == "print_ticket" and action.text == TICKET and action.turn == 1
    (heard,) = [e for e in line.of(UserTranscript) if e.final]
    said = next(e for e in line.of(AgentTranscript) if e.final)
    assert heard.t <= action.t <= said.t  # published when the reply starts
    assert agent_lines(line) == [TICKET]
    (metrics,) = line.of(TurnMetrics)
    assert metrics.answer == "action" and metrics.answer_source == "action:print_ticket"


async def test_asking_for_a_person_requests_a_handoff() -> None:
    p = kiosk_persona()
    line = spoken(p, "", ForbiddenLLM())
    await line.session.start()
    await line.session.submit_text("Can I talk to a person, please?")
    await line.run(6.0)
    await line.close()

    (handoff,) = line.of(HandoffRequested)
    assert handoff.reason == "Can I talk to a person, please?" and handoff.turn == 1
    assert agent_lines(line)[0] == p.knowledge.handoff_line


async def test_the_time_tool_answers_typed_questions_without_the_llm() -> None:
    llm = ForbiddenLLM()
    line = spoken(kiosk_persona(), "", llm)
    await line.session.start()
    await line.session.submit_text("What's the time right now?")
    await line.run(2.0)
    await line.close()

    assert llm.calls == []
    (metrics,) = line.of(TurnMetrics)
    assert metrics.answer == "tool" and metrics.answer_source == "tool:time"
    assert agent_lines(line)[0].startswith("It's ")


async def test_found_passages_go_to_the_llm_with_the_grounding_instruction() -> None:
    llm = ScriptedLLM("The guest wifi is KioskGuest.", ttft_s=0.05)
    p = kiosk_persona(passage_answers="llm", direct_threshold=0.99)
    line = spoken(p, "", llm)
    await line.session.start()
    await line.session.submit_text("Is the wifi free for guests, and what is it called?")
    await line.run(3.0)
    await line.close()

    (messages,) = llm.requests
    # The system prompt stays the persona's own; this turn's facts and their rule come with the question.
    assert messages[0] == {"role": "system", "content": p.llm.system_prompt}
    latest = messages[-1]
    assert latest["role"] == "user" and "KioskGuest" in latest["content"] and UNKNOWN in latest["content"]
    assert latest["content"].endswith("Is the wifi free for guests, and what is it called?")
    (metrics,) = line.of(TurnMetrics)
    assert metrics.answer == "llm" and metrics.answer_source == "faq#1"
    assert agent_lines(line) == ["The guest wifi is KioskGuest."]


async def test_a_persona_without_facts_still_chats_with_the_llm() -> None:
    llm = ScriptedLLM("Hello there.", ttft_s=0.05)
    line = spoken(plain_persona(), "", llm)
    await line.session.start()
    await line.session.submit_text("Tell me a joke.")
    await line.run(2.0)
    await line.close()

    assert len(llm.requests) == 1 and llm.requests[0][-1]["content"] == "Tell me a joke."
    assert line.of(TurnMetrics)[0].answer == "llm"


@pytest.mark.parametrize("spoken_turn", [True, False], ids=["spoken", "typed"])
async def test_the_fallback_line_stays_when_the_llm_fails(spoken_turn: bool) -> None:
    llm = BrokenLLM()
    p = plain_persona()
    line = spoken(p, "Tell me a joke." if spoken_turn else "", llm)
    await line.session.start()
    if not spoken_turn:
        await line.session.submit_text("Tell me a joke.")
    await line.run(8.0 if spoken_turn else 5.0)
    await line.close()

    assert llm.calls == 1
    assert agent_lines(line) == [p.llm.fallback_line]


@dataclass
class WarmedLLM(ScriptedLLM):
    """A scripted LLM that records what the Session asks it to evaluate ahead (``ChatLLM.warm``)."""

    warmed: list[list[dict[str, str]]] = field(default_factory=list)

    async def warm(self, messages: list[dict[str, str]]) -> None:
        self.warmed.append(messages)


async def test_the_conversation_is_warmed_after_an_llm_reply_not_after_a_curated_one() -> None:
    llm = WarmedLLM("The guest wifi is KioskGuest.", ttft_s=0.05)
    p = kiosk_persona(passage_answers="llm", direct_threshold=0.99)
    line = spoken(p, "", llm)
    await line.session.start()
    await line.session.submit_text("Is the wifi free for guests, and what is it called?")
    await line.run(3.0)
    assert len(llm.requests) == 1
    # Once the reply is recorded, the history (the start of the next request) is evaluated ahead.
    assert llm.warmed[-1] == line.session.history.messages()
    assert llm.warmed[-1][-1] == {"role": "assistant", "content": "The guest wifi is KioskGuest."}
    warmed = len(llm.warmed)
    await line.session.submit_text("Where are the toilets?")  # a curated answer: no LLM, no warm-up
    await line.run(3.0)
    await line.close()
    assert len(llm.requests) == 1 and len(llm.warmed) == warmed


async def test_a_window_about_to_slide_is_warmed_while_the_reply_plays() -> None:
    """Recording the fourth reply slides a four-turn window (by two turns): the slid window is evaluated
    when that reply starts playing, then after it only the reply is new."""
    llm = WarmedLLM("", ttft_s=0.05)
    data = plain_persona().model_dump()
    data["llm"]["history_turns"] = 4
    line = spoken(Persona.model_validate(data), "", llm)
    await line.session.start()
    for i in range(4):
        llm.reply = f"Here is answer number {i}."  # a reply repeating an earlier one leaves the window
        await line.session.submit_text(f"Question number {i}?")
        await line.run(3.0 * (i + 1))
    assert len(llm.requests) == 4
    slid = [m for m in llm.warmed if m[-1] == {"role": "user", "content": "Question number 3?"}]
    assert len(slid) == 1 and len(slid[0]) == 2, llm.warmed  # the system prompt and question 3
    after = line.session.history.messages()
    assert llm.warmed[-1] == after and after[: len(slid[0])] == slid[0]
    assert llm.warmed.index(slid[0]) == len(llm.warmed) - 2  # before the warm-up after the reply
    await line.close()


async def test_without_a_greeting_the_system_prompt_is_warmed_at_start() -> None:
    """The first question's request then evaluates only the question (the latency bench's first turn
    waited 555 ms for its first token, 110-190 ms later)."""
    llm = WarmedLLM("Hello there.", ttft_s=0.05)
    line = spoken(plain_persona(), "", llm)
    await line.session.start()
    await line.run(0.5)
    assert llm.warmed == [[{"role": "system", "content": line.session.persona.llm.system_prompt}]]
    await line.close()
