"""lk.agent.state, lk.transcription streams and dyad.events from Session events, against a recording
participant: the attributes the stock frontends read, in order, and nothing breaks when the room fails."""

from __future__ import annotations

import asyncio
import json
from typing import cast

from test_livekit_doubles import RecordingParticipant

from agent.events import (
    AgentTranscript,
    ErrorEvent,
    SessionEvent,
    StateChanged,
    TurnMetrics,
    UserTranscript,
)
from integrations.livekit.conventions import ConventionPublisher, Publisher, Speaker


def publisher(participant: RecordingParticipant) -> ConventionPublisher:
    return ConventionPublisher(
        cast(Publisher, participant),
        agent_track=lambda: "TR_avatar_mic",
        user=lambda: Speaker("alice", "TR_alice_mic"),
    )


async def test_a_turn_becomes_state_and_transcription_streams() -> None:
    room = RecordingParticipant("dyad-ada")
    pub = publisher(room)
    pub.start("idle")
    events: list[SessionEvent] = [
        StateChanged(0.0, "listening", "idle"),
        UserTranscript(1.0, 1, "What time", False, 0.5),
        UserTranscript(1.6, 1, "What time does it open?", True, 0.5, 1.5),
        StateChanged(2.0, "thinking", "listening"),
        StateChanged(2.6, "speaking", "thinking"),
        AgentTranscript(3.0, 1, "We open", False, "speech_7"),
        AgentTranscript(3.4, 1, "We open at nine.", False, "speech_7"),
        AgentTranscript(3.5, 1, "We open at nine.", False, "speech_7"),  # nothing new
        AgentTranscript(4.5, 1, "We open at nine. See you then.", True, "speech_7"),
        TurnMetrics(4.5, 1, end_of_turn=510.0, first_audio=1100.0),
        StateChanged(4.6, "listening", "speaking"),
        AgentTranscript(5.0, 2, "", True, "speech_8", interrupted=True),  # interrupted before a word
        ErrorEvent(5.1, "llm", "timed out"),
    ]
    for event in events:
        await asyncio.sleep(0.001)  # events a few ms apart: each state is published
        pub.handle(event)
    await pub.aclose()

    assert room.states() == ["idle", "listening", "thinking", "speaking", "listening"]
    user, agent = (
        [s for s in room.transcriptions() if s.sender_identity == "alice"],
        [s for s in room.transcriptions() if s.sender_identity is None],
    )
    assert [s.text for s in user] == ["What time", "What time does it open?"]
    assert [s.attributes["lk.transcription_final"] for s in user] == ["false", "true"]
    assert {s.attributes["lk.segment_id"] for s in user} == {user[0].attributes["lk.segment_id"]}
    assert all(s.attributes["lk.transcribed_track_id"] == "TR_alice_mic" and s.closed for s in user)

    assert len(agent) == 1  # one delta stream per utterance; nothing for the empty interrupted one
    stream = agent[0]
    assert stream.chunks == ["We open", " at nine.", " See you then."]
    assert stream.attributes["lk.transcription_final"] == "false"
    assert stream.attributes["lk.transcribed_track_id"] == "TR_avatar_mic"
    assert stream.attributes["lk.segment_id"] != user[0].attributes["lk.segment_id"]
    final = {"lk.transcription_final": "true", "lk.transcribed_track_id": "TR_avatar_mic"}
    assert stream.closed_with == final

    sent = [json.loads(payload) for topic, payload in room.data if topic == "dyad.events"]
    assert [e["type"] for e in sent] == [e.type for e in events]
    assert sent[9] == {"t": 4.5, "turn": 1, "end_of_turn": 510.0, "transcript": None, "first_token": None,
                       "first_audio": 1100.0, "stt_ms": None, "llm_ttft_ms": None,
                       "tts_first_chunk_ms": None, "interrupted": False, "answer": None,
                       "answer_source": None, "answer_score": None, "retrieval_ms": None,
                       "type": "metrics"}  # fmt: skip


async def test_open_agent_streams_are_closed_on_shutdown_and_states_coalesce() -> None:
    room = RecordingParticipant("dyad-ada")
    pub = publisher(room)
    for state, previous in (("listening", "idle"), ("thinking", "listening"), ("speaking", "thinking")):
        pub.handle(StateChanged(0.0, state, previous))  # type: ignore[arg-type]
    pub.handle(AgentTranscript(1.0, 1, "Hello", False, "speech_1"))
    pub.start()  # the queue is already full: the latest state wins
    await pub.aclose()
    assert room.states() == ["speaking"]
    (stream,) = room.transcriptions()
    assert stream.text == "Hello" and stream.closed_with == {
        "lk.transcription_final": "true",
        "lk.transcribed_track_id": "TR_avatar_mic",
    }


async def test_a_failing_room_never_reaches_the_session() -> None:
    room = RecordingParticipant("dyad-ada")
    pub = publisher(room)
    pub.start("listening")
    room.fail = True
    pub.handle(StateChanged(1.0, "thinking", "listening"))
    pub.handle(UserTranscript(1.0, 1, "hello", True, 0.1, 0.9))
    pub.handle(AgentTranscript(2.0, 1, "Hi", True, "speech_1"))
    await pub.aclose()  # no exception
    room.fail = False
    pub.start("listening")
    pub.republish_state()  # after a reconnection the state is sent again
    await pub.aclose()
    assert room.states() == ["listening"]
