"""A declared action with ``ask``: its trigger asks for the parameters, the visitor's answer fills them
(over one or more turns), and the action is called with them; what cannot be read is asked again, then
handed to a person. The shipped clinic persona checks patients in this way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from test_session_answers import agent_lines, kiosk_persona, spoken

from agent.events import ActionRequested
from agent.knowledge import ActionAnswer, Answerer, AskAnswer, DirectAnswer, HandoffAnswer
from agent.persona import KioskAction, Persona, load_persona
from agent.tools import find_date, is_question, read_slots
from integrations.cli.chat import TextChat

NOW = datetime(2025, 3, 3, 14, 5, tzinfo=UTC)
ASK = "Please tell me your full name and date of birth."
CHECK_IN: dict[str, Any] = {
    "name": "check_in",
    "description": "Check a patient in.",
    "ask": ASK,
    "say": "Thank you, {full_name}, you're checked in.",
    "triggers": ["I want to check in", "I have an appointment"],
    "parameters": {"full_name": "the patient's full name", "date_of_birth": "YYYY-MM-DD"},
    "collect": {"full_name": "name", "date_of_birth": "date"},
}
KINDS: dict[str, Any] = CHECK_IN["collect"]


def form_persona() -> Persona:
    data = kiosk_persona().model_dump()
    data["knowledge"]["actions"].append(CHECK_IN)
    return Persona.model_validate(data)


def conversation(answerer: Answerer, *turns: str) -> list[Any]:
    """Each turn's answer, with the history a Session keeps (what was said)."""
    history: list[dict[str, str]] = []
    answers = []
    for text in turns:
        answer = answerer.answer(text, history)
        answers.append(answer)
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer.text}]
    return answers


# -- reading the parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "slots"),
    [
        ("My name is Ada Lovelace and I was born on December 10th, 1815.", ("Ada Lovelace", "1815-12-10")),
        ("ada lovelace, 10 december 1815", ("Ada Lovelace", "1815-12-10")),
        ("Sure, it's John O'Brien, 1990-03-04", ("John O'Brien", "1990-03-04")),
        ("john smith 25/12/1990", ("John Smith", "1990-12-25")),
        ("Born the 3rd of Sept 1990", (None, "1990-09-03")),
        ("Ada Lovelace", ("Ada Lovelace", None)),
        ("john smith 03/04/1990", ("John Smith", None)),  # day and month could be either
        ("Ada Lovelace, 31 February 1990", ("Ada Lovelace", None)),  # no such day
    ],
)
def test_a_name_and_a_date_are_read_from_what_was_said(
    said: str, slots: tuple[str | None, str | None]
) -> None:
    found = read_slots(KINDS, [said])
    assert (found.get("full_name"), found.get("date_of_birth")) == slots


def test_later_answers_complete_and_correct_earlier_ones() -> None:
    found = read_slots(KINDS, ["Ada Lovelace", "December 10, 1815", "Sorry, it's Ada King"])
    assert found == {"full_name": "Ada King", "date_of_birth": "1815-12-10"}
    assert find_date("no date here") is None
    assert read_slots({"n": "number", "t": "text"}, ["table 12 please"]) == {
        "n": "12",
        "t": "table 12 please",
    }


def test_questions_are_told_from_answers() -> None:
    assert is_question("Where is the toilet?") and is_question("can I park here")
    assert not is_question("Ada Lovelace, 10 December 1815")


# -- the Answerer --------------------------------------------------------------------------------------


def test_the_trigger_asks_and_the_answer_calls_the_action_with_the_parameters() -> None:
    asked, done = conversation(
        Answerer(form_persona(), now=lambda: NOW),
        "Hi, I have an appointment",
        "Ada Lovelace, 10 December 1815",
    )
    assert (
        isinstance(asked, AskAnswer) and asked.text == ASK and asked.metadata()["source"] == "action:check_in"
    )
    assert isinstance(done, ActionAnswer) and done.name == "check_in"
    assert done.args == {"full_name": "Ada Lovelace", "date_of_birth": "1815-12-10"}
    assert done.text == "Thank you, Ada Lovelace, you're checked in."


def test_what_is_missing_is_asked_again_and_the_turns_add_up() -> None:
    answers = conversation(
        Answerer(form_persona(), now=lambda: NOW), "I want to check in", "Ada Lovelace", "December 10th, 1815"
    )
    assert [a.kind for a in answers] == ["ask", "ask", "action"]
    assert answers[1].text == f"Sorry, I didn't catch your date of birth. {ASK}"
    assert answers[2].args == {"full_name": "Ada Lovelace", "date_of_birth": "1815-12-10"}


def test_a_question_in_the_middle_is_answered_and_leaves_the_form() -> None:
    answers = conversation(
        Answerer(form_persona(), now=lambda: NOW),
        "I want to check in",
        "Where are the toilets?",
        "Ada Lovelace",
    )
    assert isinstance(answers[1], DirectAnswer) and "lifts" in answers[1].text
    assert not isinstance(answers[2], (ActionAnswer, AskAnswer))  # the form was left


def test_after_three_tries_a_person_takes_over() -> None:
    answers = conversation(
        Answerer(form_persona(), now=lambda: NOW), "I want to check in", "Ada", "uh, Ada", "Ada Lovelace"
    )
    assert [a.kind for a in answers] == ["ask", "ask", "ask", "handoff"]
    handoff = answers[-1]
    assert (
        isinstance(handoff, HandoffAnswer) and handoff.reason == "check_in: could not read the date of birth"
    )


def test_the_clinic_persona_checks_a_patient_in() -> None:
    answerer = Answerer(load_persona("clinic_checkin"), now=lambda: NOW)
    asked, done = conversation(answerer, "I'm here for my appointment", "Grace Hopper, December 9, 1906")
    assert isinstance(asked, AskAnswer) and "date of birth" in asked.text
    assert isinstance(done, ActionAnswer)
    assert done.args == {"full_name": "Grace Hopper", "date_of_birth": "1906-12-09"}


# -- the Session and `dyad chat` publish the action ------------------------------------------------------


async def test_the_session_publishes_the_check_in_with_its_parameters() -> None:
    line = spoken(form_persona(), "", None)
    await line.session.start()
    await line.session.submit_text("I want to check in")
    await line.run(3.0)
    await line.session.submit_text("It's Ada Lovelace, born 10 December 1815")
    await line.run(6.0)
    await line.close()

    (action,) = line.of(ActionRequested)
    assert action.name == "check_in" and action.turn == 2
    assert action.args == {"full_name": "Ada Lovelace", "date_of_birth": "1815-12-10"}
    assert agent_lines(line)[:2] == [ASK, "Thank you, Ada Lovelace, you're checked in."]


async def test_dyad_chat_checks_in_over_two_lines() -> None:
    async with TextChat(form_persona()) as chat:
        first = await chat.ask("I have an appointment")
        second = await chat.ask("ada lovelace 1815-12-10")
    assert first.kind == "ask" and first.events == []
    assert second.kind == "action" and second.events[0]["args"]["date_of_birth"] == "1815-12-10"


# -- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"collect": {}}, "`ask` and `collect` go together"),
        ({"collect": {"full_name": "name", "date_of_birth": "date", "x": "text"}}, "collect names x"),
        ({"collect": {"full_name": "name"}}, "add date_of_birth"),
        ({"say": "Hello {nickname}"}, "{nickname}"),
        ({"collect": {"full_name": "colour", "date_of_birth": "date"}}, "full_name"),
    ],
)
def test_a_bad_form_is_a_validation_error(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("{", r"\{").replace("}", r"\}")):
        KioskAction.model_validate({**CHECK_IN, **change})
