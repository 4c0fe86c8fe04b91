"""The typed events a Session emits; the MQTT bridge, LiveKit data messages and logs all consume these.

Every event has a ``type`` tag and ``t``, seconds on the session clock. ``to_dict`` gives the JSON form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AgentState = Literal["idle", "listening", "thinking", "speaking"]
ErrorSource = Literal["stt", "llm", "tts", "vad", "video", "transport"]


@dataclass(frozen=True)
class StateChanged:
    """The avatar's conversational state changed."""

    t: float
    state: AgentState
    previous: AgentState
    type: Literal["state_changed"] = "state_changed"


@dataclass(frozen=True)
class UserTranscript:
    """What the user said: interim (``final=False``) while they speak, final at the end of the turn."""

    t: float
    turn: int
    text: str
    final: bool
    start: float  # when the user's speech began
    end: float | None = None  # when it ended (final only)
    type: Literal["user_transcript"] = "user_transcript"


@dataclass(frozen=True)
class AgentTranscript:
    """What the avatar has said so far in a reply: only words actually played out."""

    t: float
    turn: int
    text: str
    final: bool
    speech_id: str
    interrupted: bool = False
    type: Literal["agent_transcript"] = "agent_transcript"


@dataclass(frozen=True)
class TurnMetrics:
    """Latency of one turn, in milliseconds from the end of the user's speech (``None``: did not happen).

    ``end_of_turn``: silence until the turn was declared over; ``transcript``: + speech recognition;
    ``first_token``: + the LLM's first token; ``first_audio``: + synthesis of the first chunk, i.e.
    voice to voice. ``stt_ms``, ``llm_ttft_ms``, ``tts_first_chunk_ms`` are the compute times of each stage.

    How the reply was decided (``agent.knowledge``): ``answer`` is its kind (``direct``, ``tool``,
    ``action``, ``handoff``, ``unknown`` or ``llm``), ``answer_source`` what it came from (a curated
    question, a passage id such as ``library.md#8``, ``tool:time``, ``action:print_ticket``),
    ``answer_score`` the match confidence (0..1) and ``retrieval_ms`` the time spent deciding.
    """

    t: float
    turn: int
    end_of_turn: float | None = None
    transcript: float | None = None
    first_token: float | None = None
    first_audio: float | None = None
    stt_ms: float | None = None
    llm_ttft_ms: float | None = None
    tts_first_chunk_ms: float | None = None
    interrupted: bool = False
    answer: str | None = None
    answer_source: str | None = None
    answer_score: float | None = None
    retrieval_ms: float | None = None
    type: Literal["metrics"] = "metrics"


@dataclass(frozen=True)
class ActionRequested:
    """The avatar does a kiosk action declared in the persona (``print_ticket``...), called by a rule or
    the LLM; the kiosk's hardware acts on it (MQTT ``actions``, LiveKit data ``dyad.events``)."""

    t: float
    turn: int
    name: str
    args: dict[str, str] = field(default_factory=dict)
    text: str = ""  # what the avatar says while doing it
    type: Literal["action"] = "action"


@dataclass(frozen=True)
class HandoffRequested:
    """The user asked for a person: staff should come (MQTT ``events``, LiveKit data ``dyad.events``)."""

    t: float
    turn: int
    reason: str  # the user's words that asked for it
    type: Literal["handoff_requested"] = "handoff_requested"


@dataclass(frozen=True)
class ErrorEvent:
    """Something failed; ``recoverable`` errors leave the session running (it said the fallback line)."""

    t: float
    source: ErrorSource
    message: str
    recoverable: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    type: Literal["error"] = "error"


SessionEvent = (
    StateChanged
    | UserTranscript
    | AgentTranscript
    | TurnMetrics
    | ErrorEvent
    | ActionRequested
    | HandoffRequested
)


def to_dict(event: SessionEvent) -> dict[str, Any]:
    """The event as a JSON-ready dict (times rounded to the millisecond)."""
    data = asdict(event)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()}
