"""Every MQTT payload of the kiosk bridge: the commands it accepts and what it publishes.

Commands arrive on ``<prefix>cmd/<name>`` as JSON objects and are validated strictly (a string where a
boolean belongs is an error, not a guess). Anything wrong becomes a :class:`CommandError` whose ``code``
and ``reason`` are published on ``<prefix>error``. Published session events reuse the shapes of
``agent/events.py`` (``to_dict``) inside an :class:`Envelope`; only the kiosk's own messages (state,
session lifecycle, acknowledgements, errors) are defined here.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.events import AgentState

MAX_PAYLOAD_BYTES = 64 * 1024  # a command is a few hundred bytes; anything this big is a mistake
MAX_SAY_CHARS = 2000

# ---------------------------------------------------------------------------------------------------
# Commands (subscribed: <prefix>cmd/<name>, QoS 1)
# ---------------------------------------------------------------------------------------------------


class Command(BaseModel):
    """Base of every command: unknown fields are errors; ``id`` is echoed in the answer."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    command: ClassVar[str]
    example: ClassVar[str]
    id: str | None = Field(None, min_length=1, max_length=64, description="echoed in the ack or error")


class SayCommand(Command):
    """Speak this text now (interrupting whatever the avatar is saying)."""

    command: ClassVar[str] = "say"
    example: ClassVar[str] = '{"text": "We close in ten minutes."}'
    text: str = Field(min_length=1, max_length=MAX_SAY_CHARS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the text is blank")
        return value.strip()


class PersonaCommand(Command):
    """Switch persona; it applies from the next session (a running conversation keeps its persona)."""

    command: ClassVar[str] = "persona"
    example: ClassVar[str] = '{"name": "library"}'
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a persona name, not a path")


class SessionStartCommand(Command):
    """Start a session; ``greet: false`` starts it without the persona's greeting."""

    command: ClassVar[str] = "session/start"
    example: ClassVar[str] = '{"greet": true}'
    greet: bool = True


class SessionEndCommand(Command):
    """End the running session."""

    command: ClassVar[str] = "session/end"
    example: ClassVar[str] = "{}"


class PresenceCommand(Command):
    """A kiosk sensor: a person ``approached`` (start a session and greet) or ``left`` (end it)."""

    command: ClassVar[str] = "presence"
    example: ClassVar[str] = '{"event": "approached"}'
    event: Literal["approached", "left"]


class MuteCommand(Command):
    """Mute or unmute the microphone: while muted the avatar hears silence (it can still speak)."""

    command: ClassVar[str] = "mute"
    example: ClassVar[str] = '{"muted": true}'
    muted: bool


AnyCommand = (
    SayCommand | PersonaCommand | SessionStartCommand | SessionEndCommand | PresenceCommand | MuteCommand
)
COMMANDS: dict[str, type[Command]] = {
    model.command: model
    for model in (
        SayCommand,
        PersonaCommand,
        SessionStartCommand,
        SessionEndCommand,
        PresenceCommand,
        MuteCommand,
    )
}

ErrorCode = Literal[
    "too_large", "not_utf8", "invalid_json", "invalid_payload", "unknown_command", "busy", "failed"
]


class CommandError(Exception):
    """A command that cannot be carried out; published on ``<prefix>error``."""

    def __init__(
        self,
        code: ErrorCode,
        reason: str,
        *,
        command_id: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.code: ErrorCode = code
        self.reason = reason
        self.command_id = command_id
        self.details = details or []


def parse_command(name: str, payload: bytes) -> Command:
    """Validate the payload of ``cmd/<name>``; raises :class:`CommandError` naming what is wrong."""
    model = COMMANDS.get(name)
    if model is None:
        raise CommandError(
            "unknown_command", f"unknown command {name!r}; the commands are: {', '.join(COMMANDS)}"
        )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError(
            "too_large",
            f"the payload is {len(payload)} bytes; commands are at most {MAX_PAYLOAD_BYTES} bytes",
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"the payload is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise CommandError("not_utf8", reason) from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise CommandError(
            "invalid_json", f"the payload is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"send e.g. {model.example}"
        ) from None  # fmt: skip
    if not isinstance(data, dict):
        raise CommandError(
            "invalid_payload", f"expected a JSON object, got {type(data).__name__}; send e.g. {model.example}"
        )
    command_id = data.get("id") if isinstance(data.get("id"), str) else None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "(payload)",
                "problem": e["msg"].removeprefix("Value error, "),
            }
            for e in exc.errors(include_url=False)
        ]
        problems = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
        raise CommandError(
            "invalid_payload",
            f"{problems}; send e.g. {model.example}",
            command_id=command_id,
            details=details,
        ) from None


# ---------------------------------------------------------------------------------------------------
# Published payloads
# ---------------------------------------------------------------------------------------------------


class Outgoing(BaseModel):
    """Base of the kiosk's own published messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def payload(self) -> dict[str, Any]:
        """The JSON-ready dict."""
        return self.model_dump(mode="json")


class Envelope(Outgoing):
    """Fields added to every message on ``transcript``, ``metrics``, ``events`` and ``error``.

    ``seq`` counts every such message of this kiosk process in publishing order; a consumer drops a
    repeated ``seq`` (QoS 1 may deliver a message twice when a connection breaks before its ack).
    """

    kiosk: str
    seq: int = Field(ge=1)
    ts: float = Field(description="unix time the message was produced")
    session: str | None = Field(None, description="the session it belongs to, if any")


class StatePayload(Outgoing):
    """``<prefix>state`` (retained): the avatar's state and since when (unix time)."""

    state: AgentState
    since: float
    session: str | None
    persona: str
    muted: bool


class SessionStarted(Outgoing):
    """``events``: a session began (``reason``: presence, command, page, ...)."""

    type: Literal["session_started"] = "session_started"
    persona: str
    reason: str


class SessionEnded(Outgoing):
    """``events``: a session ended."""

    type: Literal["session_ended"] = "session_ended"
    reason: str


class PersonaChanged(Outgoing):
    """``events``: the persona for the next session."""

    type: Literal["persona_changed"] = "persona_changed"
    persona: str
    display_name: str
    applies: Literal["now", "next_session"]


class MuteChanged(Outgoing):
    """``events``: the microphone was muted or unmuted."""

    type: Literal["mute_changed"] = "mute_changed"
    muted: bool


class CommandDone(Outgoing):
    """``events``: a command was carried out (``id`` as sent)."""

    type: Literal["command_done"] = "command_done"
    command: str
    id: str | None = None


class BufferOverflow(Outgoing):
    """``events``: the broker was away so long that the oldest buffered messages were dropped."""

    type: Literal["buffer_overflow"] = "buffer_overflow"
    dropped: int


class ErrorPayload(Outgoing):
    """``<prefix>error``: a command that was rejected or failed."""

    topic: str = Field(description="the topic the offending command arrived on")
    error: ErrorCode
    reason: str
    id: str | None = None
    details: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def of(cls, topic: str, error: CommandError) -> ErrorPayload:
        """The error message for ``error`` raised by a command on ``topic``."""
        return cls(
            topic=topic, error=error.code, reason=error.reason, id=error.command_id, details=error.details
        )


def now() -> float:
    """Unix time, rounded to the millisecond, as published."""
    return round(time.time(), 3)
