"""Deterministic tools a kiosk is asked about every day, answered without the LLM.

The embedded SmolLM2 cannot tell the time and invents opening hours, so these are computed: the time and
date in the persona's time zone, its opening hours (per day, or the week), whether it is open now, and a
hand-off to a person. Kiosk actions declared in the persona (``print_ticket``...) are called the same way;
one with an ``ask`` is a small form: its trigger asks for the parameters, and :func:`read_slots` reads
them (a name, a date...) from the visitor's answer.
:meth:`ToolBox.openai_tools` describes all of them in OpenAI function-calling form for endpoints that
support it, and :meth:`ToolBox.call` runs such a call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from agent.persona import ALL_TOOLS, KioskAction, KnowledgeConfig, SlotKind, ToolName, Weekday

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# English phrasings that call each tool; matched through the knowledge index like curated questions.
TOOL_PHRASES: dict[ToolName, tuple[str, ...]] = {
    "time": (
        "what time is it",
        "what is the time",
        "what's the time right now",
        "tell me the current time",
        "do you have the time",
        "time please",
    ),
    "date": (
        "what is the date today",
        "what day is it",
        "what's today's date",
        "which date is it",
        "what is the day today",
    ),
    "hours": (
        "what are your opening hours",
        "when are you open",
        "what time do you open",
        "what time do you close",
        "when do you close",
        "opening times",
        "how late are you open",
        "closing time",
        "what days are you open",
    ),
    "open_now": (
        "are you open now",
        "are you still open right now",
        "is it open at the moment",
        "open now",
    ),
    "handoff": (
        "can I talk to a person",
        "I want to speak to a real human",
        "can I speak to a member of staff",
        "get someone to help me",
        "call an employee over",
        "I need a staff member",
    ),
}

ToolKind = Literal["tool", "action", "handoff", "ask"]


@dataclass(frozen=True)
class ToolResult:
    """What a tool produced: ``text`` to say, and for an action or hand-off what to publish (``ask``: an
    action's question for its parameters, nothing published yet)."""

    kind: ToolKind
    name: str
    text: str
    args: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Opening hours
# ---------------------------------------------------------------------------------------------------


def _clock(value: str) -> time:
    hours, minutes = (int(part) for part in value.split(":"))
    return time.max if hours == 24 else time(hours, minutes)


def spoken_time(value: time) -> str:
    """``9 am``, ``8:30 pm``, ``noon``, ``midnight``."""
    if value == time.max or value == time(0, 0):
        return "midnight"
    if value == time(12, 0):
        return "noon"
    hour = value.hour % 12 or 12
    suffix = "am" if value.hour < 12 else "pm"
    return f"{hour} {suffix}" if value.minute == 0 else f"{hour}:{value.minute:02d} {suffix}"


class OpeningHours:
    """The week's opening hours from ``knowledge.opening_hours`` (a day not listed is closed)."""

    def __init__(self, table: Mapping[Weekday, str]) -> None:
        self.known = bool(table)
        self._ranges: dict[str, list[tuple[time, time]]] = {}
        for day in DAYS:
            spec = table.get(cast(Weekday, day), "closed")
            self._ranges[day] = [
                (_clock(part.split("-")[0]), _clock(part.split("-")[1]))
                for part in ([] if spec == "closed" else spec.split(","))
            ]

    def ranges(self, day: str) -> list[tuple[time, time]]:
        """The open intervals of ``day`` (a weekday name), empty when closed."""
        return self._ranges[day]

    def describe_day(self, day: str) -> str:
        """``from 9 am to 8 pm`` (``and from ...``), or ``closed``."""
        ranges = self._ranges[day]
        if not ranges:
            return "closed"
        return " and ".join(f"from {spoken_time(a)} to {spoken_time(b)}" for a, b in ranges)

    def describe_week(self) -> str:
        """One sentence for the week, consecutive days with the same hours grouped."""
        groups: list[tuple[str, str, str]] = []  # (first day, last day, description)
        for day in DAYS:
            text = self.describe_day(day)
            if groups and groups[-1][2] == text:
                groups[-1] = (groups[-1][0], day, text)
            else:
                groups.append((day, day, text))
        open_parts, closed_parts = [], []
        for first, last, text in groups:
            days = first.title() if first == last else f"{first.title()} to {last.title()}"
            if text == "closed":
                closed_parts.append(days)
            else:
                open_parts.append(f"{days} {text}")
        sentence = "We're open " + _join(open_parts) if open_parts else "We're closed every day"
        if open_parts and closed_parts:
            sentence += ", and closed on " + _join(closed_parts)
        return sentence + "."

    def is_open(self, moment: datetime) -> time | None:
        """The closing time if open at ``moment`` (local time), else None."""
        now = moment.time()
        for start, end in self._ranges[DAYS[moment.weekday()]]:
            if start <= now < end:
                return end
        return None

    def next_opening(self, moment: datetime) -> tuple[int, time] | None:
        """(days ahead, opening time) of the next opening after ``moment``, None if never open."""
        for ahead in range(8):
            day = DAYS[(moment.weekday() + ahead) % 7]
            for start, _ in self._ranges[day]:
                if ahead > 0 or start > moment.time():
                    return ahead, start
        return None


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


_DAY_WORDS = re.compile(
    r"\b(today|tonight|tomorrow|weekends?|weekdays?|mondays?|tuesdays?|wednesdays?|thursdays?|fridays?|saturdays?"
    r"|sundays?)\b",
    re.IGNORECASE,
)


def mentioned_days(text: str, today: int) -> list[str]:
    """Weekday names a question is about (``today`` is a weekday index, Monday 0), in order."""
    days: list[str] = []
    for match in _DAY_WORDS.finditer(text):
        word = match.group(1).lower().removesuffix("s")
        if word in {"today", "tonight"}:
            found = [DAYS[today]]
        elif word == "tomorrow":
            found = [DAYS[(today + 1) % 7]]
        elif word == "weekend":
            found = ["saturday", "sunday"]
        elif word == "weekday":
            found = list(DAYS[:5])
        else:
            found = [word]
        days.extend(d for d in found if d not in days)
    return days


def strip_day_words(text: str) -> str:
    """``text`` without day words: they fill the hours tool's day, they are not what is asked."""
    return _DAY_WORDS.sub(" ", text)


# ---------------------------------------------------------------------------------------------------
# The tool box
# ---------------------------------------------------------------------------------------------------


class ToolBox:
    """The persona's deterministic tools and declared actions; ``now`` is injectable for tests and benches."""

    def __init__(self, knowledge: KnowledgeConfig, now: Callable[[], datetime] | None = None) -> None:
        self.knowledge = knowledge
        self.zone = ZoneInfo(knowledge.timezone)
        self.hours = OpeningHours(knowledge.opening_hours)
        self._now = now or (lambda: datetime.now(self.zone))
        self.actions: dict[str, KioskAction] = {a.name: a for a in knowledge.actions}

    def local_now(self) -> datetime:
        """The current time in the persona's time zone."""
        moment = self._now()
        if moment.tzinfo is None:
            raise ValueError("the clock must return an aware datetime (with tzinfo)")
        return moment.astimezone(self.zone)

    def enabled(self) -> list[ToolName]:
        """Tools this persona answers: hours and open_now need ``knowledge.opening_hours``."""
        needs_hours = {"hours", "open_now"}
        return [
            t for t in ALL_TOOLS if t in self.knowledge.tools and (self.hours.known or t not in needs_hours)
        ]

    def phrasings(self) -> dict[str, list[str]]:
        """``tool name`` or ``action name`` -> phrases that call it directly."""
        found: dict[str, list[str]] = {name: list(TOOL_PHRASES[name]) for name in self.enabled()}
        for action in self.actions.values():
            if action.triggers:
                found[action.name] = list(action.triggers)
        return found

    # -- running --------------------------------------------------------------------------------------

    def run(self, name: str, user_text: str = "") -> ToolResult:
        """Run a tool or action matched from ``user_text`` (a question's days fill the hours tool)."""
        if name in self.actions:
            action = self.actions[name]
            if action.ask is not None:  # its parameters come with the answer to its question
                return ToolResult("ask", name, action.ask)
            return ToolResult("action", name, action.say)
        now = self.local_now()
        days = mentioned_days(user_text, now.weekday())
        if name == "open_now" and days and days != [DAYS[now.weekday()]]:
            name = "hours"  # "are you open on Sunday?" asks about Sunday, not now
        return self.call(name, {"days": ",".join(days), "reason": user_text})

    def call(self, name: str, args: Mapping[str, Any]) -> ToolResult:
        """Run tool ``name`` with ``args`` (from a rule or an LLM's function call)."""
        now = self.local_now()
        if name in self.actions:
            action = self.actions[name]
            missing = [p for p in action.parameters if not str(args.get(p, "")).strip()]
            if missing:
                raise ValueError(f"action {name} needs {', '.join(missing)}")
            values = {p: str(args[p]).strip() for p in action.parameters}
            return ToolResult("action", name, action.say.format_map(values), values)
        if name == "time":
            return ToolResult("tool", name, f"It's {spoken_time(now.time().replace(second=0))}.")
        if name == "date":
            return ToolResult("tool", name, f"Today is {now:%A}, {now:%B} {now.day}, {now.year}.")
        if name == "hours":
            days = [d for d in str(args.get("days", "")).lower().split(",") if d in DAYS]
            return ToolResult("tool", name, self._hours_text(days, now), {"days": ",".join(days)})
        if name == "open_now":
            return ToolResult("tool", name, self._open_now_text(now))
        if name == "handoff":
            reason = str(args.get("reason", "")).strip()
            return ToolResult("handoff", name, self.knowledge.handoff_line, {"reason": reason})
        raise ValueError(f"no tool or action named {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        """Every tool and action name :meth:`call` accepts."""
        return [*self.enabled(), *self.actions]

    def _hours_text(self, days: list[str], now: datetime) -> str:
        if not days:
            return self.hours.describe_week()
        today, tomorrow = DAYS[now.weekday()], DAYS[(now.weekday() + 1) % 7]
        groups: list[tuple[list[str], str]] = []  # days in a row with the same hours
        for day in days:
            text = self.hours.describe_day(day)
            if groups and groups[-1][1] == text and DAYS.index(groups[-1][0][-1]) + 1 == DAYS.index(day):
                groups[-1][0].append(day)
            else:
                groups.append(([day], text))
        parts = []
        for group, text in groups:
            if len(group) > 1:
                label = f"{group[0].title()} to {group[-1].title()}"
            else:
                label = {today: "today", tomorrow: "tomorrow"}.get(group[0], f"on {group[0].title()}")
            parts.append(f"we're closed {label}" if text == "closed" else f"{label} we're open {text}")
        sentence = _join(parts)
        return sentence[0].upper() + sentence[1:] + "."

    def _open_now_text(self, now: datetime) -> str:
        closing = self.hours.is_open(now)
        if closing is not None:
            return f"Yes, we're open now, until {spoken_time(closing)}."
        upcoming = self.hours.next_opening(now)
        if upcoming is None:
            return "No, we're closed."
        ahead, start = upcoming
        when = {0: "today", 1: "tomorrow"}.get(ahead, f"on {(now + timedelta(days=ahead)):%A}")
        return f"No, we're closed right now. We open again {when} at {spoken_time(start)}."

    # -- function calling -----------------------------------------------------------------------------

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools and actions as OpenAI ``tools=[...]`` function definitions."""
        described: dict[str, tuple[str, dict[str, str]]] = {
            "time": ("The current local time.", {}),
            "date": ("Today's date and weekday.", {}),
            "hours": (
                "Opening hours, for the whole week or for some days.",
                {"days": "comma-separated weekday names, e.g. 'saturday,sunday'; empty for the week"},
            ),
            "open_now": ("Whether the place is open right now, and until when.", {}),
            "handoff": ("Ask a member of staff to come and help.", {"reason": "why a person is needed"}),
        }
        specs: list[tuple[str, str, dict[str, str]]] = [(n, *described[n]) for n in self.enabled()]
        specs += [(a.name, a.description, dict(a.parameters)) for a in self.actions.values()]
        return [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": description,
                    "parameters": {
                        "type": "object",
                        "properties": {p: {"type": "string", "description": d} for p, d in params.items()},
                        "required": [p for p in params if p != "days"],
                    },
                },
            }
            for name, description, params in specs
        ]

    def call_json(self, name: str, arguments: str) -> ToolResult:
        """Run an OpenAI tool call whose ``arguments`` is the JSON string the API returns."""
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"tool call {name}: arguments are not JSON ({exc})") from None
        if not isinstance(args, dict):
            raise ValueError(f"tool call {name}: arguments must be a JSON object, got {arguments!r}")
        return self.call(name, args)


# ---------------------------------------------------------------------------------------------------
# Reading an action's parameters from what the visitor said
# ---------------------------------------------------------------------------------------------------

_MONTH_NAMES = (
    "january february march april may june july august september october november december".split()  # noqa: SIM905
)
_MONTHS = {name: i for i, name in enumerate(_MONTH_NAMES, 1)} | {
    name[:3]: i for i, name in enumerate(_MONTH_NAMES, 1)
}
_MONTHS["sept"] = 9
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATE_FORMS: tuple[tuple[re.Pattern[str], tuple[int, int, int]], ...] = (
    # (pattern, the groups holding year, month, day)
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), (1, 2, 3)),
    (re.compile(rf"\b{_MONTH}\s+(?:the\s+)?{_DAY},?\s+(\d{{4}})\b", re.IGNORECASE), (3, 1, 2)),
    (re.compile(rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b", re.IGNORECASE), (3, 2, 1)),
    (re.compile(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{4})\b"), (3, 0, 0)),  # day and month: see _numeric
)
_NAME_FILLER = re.compile(
    r"\b(?:hi|hello|hey|yes|yeah|yep|sure|ok|okay|so|um|uh|er|well|please|thanks|thank you|sorry|"
    r"my (?:full )?name is|my name's|name is|the name is|i am|i'm|it's|it is|this is|call me|here|"
    r"(?:my )?(?:date of birth|birth date|birthday|dob)(?: is)?|(?:and )?(?:i was )?born(?: on| in)?|"
    r"and|on|of|the|my|is|was)\b",
    re.IGNORECASE,
)
_NAME_WORD = re.compile(r"[^\W\d_][\w'-]*")
_QUESTION_START = re.compile(
    r"^\s*(?:what|where|when|why|who|which|how|can|could|would|will|do|does|did|is|are|should|may)\b",
    re.IGNORECASE,
)


def is_question(text: str) -> bool:
    """Whether ``text`` asks something (rather than answers): a question mark or a question word first."""
    return "?" in text or bool(_QUESTION_START.match(text))


def find_date(text: str) -> tuple[date, tuple[int, int]] | None:
    """The first date ``text`` states (``10 December 1815``, ``December 10th, 1815``, ``1815-12-10``,
    or ``25/12/1990`` where day and month cannot be confused), with its span."""
    for pattern, (y, m, d) in _DATE_FORMS:
        for match in pattern.finditer(text):
            if m == 0:
                parts = _numeric(int(match.group(1)), int(match.group(2)))
                if parts is None:
                    continue
                month, day = parts
            else:
                month_text = match.group(m).lower().rstrip(".")
                month = _MONTHS[month_text] if month_text in _MONTHS else int(month_text)
                day = int(match.group(d))
            try:
                return date(int(match.group(y)), month, day), match.span()
            except ValueError:
                continue
    return None


def _numeric(first: int, second: int) -> tuple[int, int] | None:
    """(month, day) of ``first/second``, None when either order could be meant (``03/04``)."""
    if first > 12 >= second:
        return second, first
    if second > 12 >= first:
        return first, second
    return (first, second) if first == second else None


def read_slots(kinds: Mapping[str, SlotKind], texts: list[str]) -> dict[str, str]:
    """The parameters ``kinds`` names, read from ``texts`` (what the visitor said, oldest first; a later
    answer wins): a date as ``YYYY-MM-DD``, a number, a name (title case, at most five words, the words
    left when dates, numbers and filler such as "my name is" are taken out), or the whole text."""
    found: dict[str, str] = {}
    for text in texts:
        rest = text
        for slot, kind in kinds.items():
            if kind == "date" and (hit := find_date(rest)) is not None:
                value, (start, end) = hit
                found[slot] = value.isoformat()
                rest = rest[:start] + " " + rest[end:]
            elif kind == "date":  # a date that is not one (31 February) is not part of a name either
                for pattern, _ in _DATE_FORMS:
                    rest = pattern.sub(" ", rest)
            elif kind == "number" and (number := re.search(r"\d+", rest)) is not None:
                found[slot] = number.group()
                rest = rest[: number.start()] + " " + rest[number.end() :]
        for slot, kind in kinds.items():
            if kind == "text" and text.strip():
                found[slot] = text.strip()
            elif kind == "name":
                words = _NAME_WORD.findall(_NAME_FILLER.sub(" ", re.sub(r"\d+", " ", rest)))
                if 0 < len(words) <= 5:
                    found[slot] = " ".join(w[:1].upper() + w[1:] for w in words)
    return found
