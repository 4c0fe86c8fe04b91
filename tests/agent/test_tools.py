"""Deterministic kiosk tools: time and date in the persona's zone, opening hours, open now, actions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.persona import KnowledgeConfig
from agent.tools import OpeningHours, ToolBox, mentioned_days, spoken_time

HOURS = {day: "09:00-20:00" for day in ("monday", "tuesday", "wednesday", "thursday", "friday")}
HOURS |= {"saturday": "10:00-12:30, 13:30-17:00", "sunday": "closed"}
# 2025-03-04 is a Tuesday; 21:42 UTC is 3:42 pm in Chicago (CST, UTC-6) and 6:42 am on Wednesday in Tokyo.
UTC_NOW = datetime(2025, 3, 4, 21, 42, tzinfo=UTC)


def box(now: datetime = UTC_NOW, **fields: Any) -> ToolBox:
    config = KnowledgeConfig.model_validate({"timezone": "America/Chicago", "opening_hours": HOURS, **fields})
    return ToolBox(config, now=lambda: now)


def at(hour: int, minute: int = 0, day: int = 4) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=ZoneInfo("America/Chicago"))


def test_time_is_said_in_the_personas_time_zone() -> None:
    assert box().call("time", {}).text == "It's 3:42 pm."
    assert box(timezone="Asia/Tokyo").call("time", {}).text == "It's 6:42 am."
    assert box(timezone="Asia/Tokyo").call("date", {}).text == "Today is Wednesday, March 5, 2025."
    assert box().call("date", {}).text == "Today is Tuesday, March 4, 2025."


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        box(now=datetime(2025, 3, 4, 12, 0)).call("time", {})


def test_week_hours_group_days_with_the_same_hours() -> None:
    text = box().call("hours", {}).text
    assert text == (
        "We're open Monday to Friday from 9 am to 8 pm and Saturday from 10 am to 12:30 pm and from "
        "1:30 pm to 5 pm, and closed on Sunday."
    )


def test_hours_for_days_named_in_the_question() -> None:
    tools = box()
    assert tools.run("hours", "When do you open on Saturdays?").text.startswith("On Saturday we're open")
    assert tools.run("hours", "and tomorrow?").text == "Tomorrow we're open from 9 am to 8 pm."
    assert tools.run("hours", "open on weekdays?").text == "Monday to Friday we're open from 9 am to 8 pm."
    assert tools.run("open_now", "are you open on Sunday?").text == "We're closed on Sunday."


def test_open_now_says_until_when_or_when_next() -> None:
    assert box(now=at(15, 42)).run("open_now").text == "Yes, we're open now, until 8 pm."
    assert (
        box(now=at(7, 0)).run("open_now").text == "No, we're closed right now. We open again today at 9 am."
    )
    assert box(now=at(21, 0)).run("open_now").text.endswith("We open again tomorrow at 9 am.")
    # Saturday 12:45 is the lunch break; Saturday evening waits for Monday.
    assert box(now=at(12, 45, day=8)).run("open_now").text.endswith("today at 1:30 pm.")
    assert box(now=at(18, 0, day=8)).run("open_now").text.endswith("on Monday at 9 am.")


def test_opening_hours_helpers() -> None:
    hours = OpeningHours({"monday": "00:00-24:00"})
    assert hours.describe_day("monday") == "from midnight to midnight"
    assert hours.describe_day("tuesday") == "closed"
    assert spoken_time(datetime(2025, 1, 1, 12, 0).time()) == "noon"
    assert mentioned_days("open this weekend or on Tuesday?", today=0) == ["saturday", "sunday", "tuesday"]


def test_hours_tools_need_opening_hours() -> None:
    tools = ToolBox(KnowledgeConfig(), now=lambda: UTC_NOW)
    assert tools.enabled() == ["time", "date", "handoff"]


def test_handoff_carries_the_reason() -> None:
    result = box().run("handoff", "I want a real person")
    assert result.kind == "handoff" and result.args == {"reason": "I want a real person"}
    assert result.text == KnowledgeConfig().handoff_line


ACTIONS = [
    {
        "name": "check_in",
        "description": "Check a patient in.",
        "say": "You're checked in.",
        "parameters": {"full_name": "the patient's name"},
    },
    {
        "name": "print_ticket",
        "description": "Print a queue ticket.",
        "say": "Here you go.",
        "triggers": ["ticket"],
    },
]


def test_declared_actions_are_called_with_their_arguments() -> None:
    tools = box(actions=ACTIONS)
    result = tools.call_json("check_in", json.dumps({"full_name": "Ada Lovelace"}))
    assert (result.kind, result.name, result.args, result.text) == (
        "action",
        "check_in",
        {"full_name": "Ada Lovelace"},
        "You're checked in.",
    )
    with pytest.raises(ValueError, match="check_in needs full_name"):
        tools.call("check_in", {})
    with pytest.raises(ValueError, match="not JSON"):
        tools.call_json("check_in", "{full_name")
    with pytest.raises(ValueError, match="no tool or action named 'fly'"):
        tools.call("fly", {})
    assert tools.phrasings()["print_ticket"] == ["ticket"]
    assert "check_in" not in tools.phrasings()  # no triggers: only the LLM can call it


def test_openai_function_schema() -> None:
    specs = {spec["function"]["name"]: spec for spec in box(actions=ACTIONS).openai_tools()}
    assert set(specs) == {"time", "date", "hours", "open_now", "handoff", "check_in", "print_ticket"}
    check_in = specs["check_in"]
    assert check_in["type"] == "function"
    assert check_in["function"]["parameters"] == {
        "type": "object",
        "properties": {"full_name": {"type": "string", "description": "the patient's name"}},
        "required": ["full_name"],
    }
    assert specs["hours"]["function"]["parameters"]["required"] == []
