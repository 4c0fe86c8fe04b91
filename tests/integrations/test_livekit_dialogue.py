"""Two avatars live in one room: each its own identity, token, state attribute and transcription stream;
the person's words answered by the avatar they address; each perceiving the other avatar.

The room is the recording double (no LiveKit server runs here): each avatar has its own connection, so
each has its own room object, in which the other avatar is a remote agent participant. The stacks are
the real ones (Silero VAD, Whisper, the embedded LLM, Kokoro, the renderer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import numpy as np
import pytest
import pytest_asyncio
from livekit import api, rtc
from polling import waiter
from scipy.signal import resample_poly
from test_livekit_doubles import PlayedAudio, RecordingRoom, RemoteParticipant, ScriptedReader, Stream
from typer.testing import CliRunner

from agent.persona import Persona, load_persona
from avatar_core.config import AppSettings
from avatar_core.tts.kokoro import KokoroTTS
from integrations.cli.main import app
from integrations.files.dialogue import AvatarPartner
from integrations.livekit.dialogue import (
    DuoRoom,
    Floor,
    RoomListening,
    dialogue_credentials,
    dialogue_identities,
    second_persona,
)
from integrations.livekit.tokens import TokenError, check_token
from integrations.llm.local_server import LocalLLMServer
from integrations.stack import SharedModels, open_stack

KEY, SECRET = "devkey", "secret-that-is-long-enough-for-hs256"
ENV = {"LIVEKIT_URL": "ws://127.0.0.1:7880", "LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": SECRET}
WAIT_S = 240.0  # the machine is slow and shared; generous, never a timing assertion


def small(name: str, greeting: str) -> Persona:
    data = load_persona(name).model_dump()
    data["llm"].update({"greeting": greeting, "temperature": 0.0, "max_tokens": 20})
    data["appearance"]["video"].update({"width": 128, "height": 128})
    return Persona.model_validate(data)


def test_each_avatar_gets_its_own_identity_and_token() -> None:
    personas = [load_persona("library_receptionist"), load_persona("default")]
    credentials = dialogue_credentials("lobby", personas, env=ENV)
    assert [c.identity for c in credentials] == ["library-desk-robin", "dyad-ada"]
    assert credentials[0].token != credentials[1].token
    for persona, creds in zip(personas, credentials, strict=True):
        claims = check_token(creds.token, "lobby", api_key=KEY, api_secret=SECRET)
        assert claims.identity == creds.identity and claims.name == persona.identity.display_name
        assert claims.kind == "agent"
        assert claims.video is not None and claims.video.can_update_own_metadata  # lk.agent.state
        assert api.TokenVerifier(KEY, SECRET).verify(creds.token).identity == creds.identity
    twice = [load_persona("default"), load_persona("default")]
    assert dialogue_identities(twice) == ["dyad-ada", "dyad-ada-2"]
    with pytest.raises(TokenError, match="LIVEKIT_API_KEY"):
        dialogue_credentials("lobby", personas, env={"LIVEKIT_URL": "ws://127.0.0.1:7880"})


def test_the_command_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    args = ["livekit", "dialogue", "--room", "lobby", "--personas", "library_receptionist", "default"]
    result = CliRunner().invoke(app, [*args, "--url", "ws://127.0.0.1:7880"])
    assert result.exit_code == 2 and "need a token each" in result.output
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no LiveKit URL" in result.output


def test_the_floor_follows_the_name_said() -> None:
    floor = Floor([["Robin", "library-desk-robin"], ["Ada", "dyad-ada"]])
    assert floor.claims(0, "Where are the toilets?") and not floor.claims(1, "Where are the toilets?")
    assert floor.claims(1, "Ada, what do you think?") and not floor.claims(0, "Ada, what do you think?")
    assert floor.claims(1, "And why is that?")  # still talking to Ada
    assert floor.claims(0, "robin, thanks!")
    assert floor.claims(0, "Robin and Ada, goodbye.")  # both named: whoever was addressed answers


def test_words_not_made_out_are_the_addressed_avatars_to_ask_about() -> None:
    # A Session asks its answers_to hook about the turn's words; words that could not be made out reach it
    # empty, and only the avatar addressed last asks again.
    floor = Floor([["Robin", "library-desk-robin"], ["Ada", "dyad-ada"]])
    assert floor.claims(0, "") and not floor.claims(1, "")
    floor.claims(1, "Ada, one more thing.")
    assert floor.claims(1, "") and not floor.claims(0, "")


def test_the_face_follows_the_person_first_then_the_other_avatar() -> None:
    listening = RoomListening(AvatarPartner(load_persona("default").turn_taking))
    assert not listening.frame(0.5).speaking  # nobody speaks
    voice = KokoroTTS(AppSettings().cache_dir).synthesize("Good morning, how can I help?", "jm_kumo") * 32767
    for k in range(0, voice.size - 480, 480):  # the other avatar's 20 ms output frames at 24 kHz
        listening.hear(voice[k : k + 480].astype(np.int16))
        if listening.peer.voice.vad.speaking:
            break
    other = listening.frame(3.0)
    assert other.speaking and other.t == 3.0 and listening.peer_heard_speaking  # on the listener's clock
    person = np.zeros(1600, np.float32)
    listening.push_audio(person, 3.0, True)  # the Session's VAD says the person speaks: they come first
    assert listening.frame(3.1).energy == 0.0 and listening.frame(3.1).speaking


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[LocalLLMServer]:
    async with LocalLLMServer() as running:
        yield running


until = waiter(WAIT_S)


def finals(streams: list[Stream], sender: str | None) -> list[Stream]:
    # A final transcript: interim ones (the user's words while they speak) say lk.transcription_final false.
    return [
        s
        for s in streams
        if s.sender_identity == sender
        and s.closed_with is not None
        and {**s.attributes, **s.closed_with}.get("lk.transcription_final") == "true"
    ]


@pytest.mark.asyncio(loop_scope="module")
async def test_two_avatars_in_one_room(server: LocalLLMServer) -> None:
    personas = [small("library_receptionist", "Hello."), second_persona(small("default", "Hi."))]
    ids = dialogue_identities(personas)
    rooms = [RecordingRoom(ids[0], "lobby"), RecordingRoom(ids[1], "lobby")]
    tts = KokoroTTS(AppSettings().cache_dir)
    speech = resample_poly(tts.synthesize("Ada, what is your favourite colour?", "jm_kumo"), 2, 3)
    quiet = np.zeros(16_000 * 600, np.float32)  # the visitor is silent until Robin has greeted them
    mics = [PlayedAudio(quiet), PlayedAudio(quiet)]  # each connection reads the person's track
    visitors = [RemoteParticipant("visitor"), RemoteParticipant("visitor")]
    mic_pubs = [v.microphone(m) for v, m in zip(visitors, mics, strict=True)]
    models = SharedModels(llm_server=server)
    try:
        async with (
            open_stack(personas[0], models=models) as first,
            open_stack(personas[1], models=models, seed=1) as second,
        ):
            duo = DuoRoom([cast(rtc.Room, r) for r in rooms], [first, second], reader=ScriptedReader())
            running = asyncio.create_task(duo.run())
            locals_ = [r.local_participant for r in rooms]
            await until(lambda: all(len(p.publications) == 2 for p in locals_), "both avatars' tracks")
            for k, room in enumerate(rooms):  # each sees the other as an agent, never attended
                room.join(RemoteParticipant(ids[1 - k], rtc.ParticipantKind.PARTICIPANT_KIND_AGENT))
            for room, visitor, local in zip(rooms, visitors, locals_, strict=True):
                room.join(visitor)
                local.publications[0].subscribed.set()
            await until(lambda: all(a.selector.current == "visitor" for a in duo.avatars), "both attend")

            robin, ada = locals_
            await until(lambda: len(finals(robin.transcriptions(), None)) >= 1, "Robin's greeting")
            for mic in mics:  # then asks Ada a question, 0.5 s from now
                start = round(mic.played_s * 16_000) + 8_000
                mic.samples = np.concatenate([quiet[:start], speech, quiet]).astype(np.float32)

            def answered() -> bool:
                return len(finals(locals_[1].transcriptions(), None)) >= 1

            await until(answered, "Ada's answer")
            # Each avatar publishes its own state and transcripts on its own connection.
            assert robin.identity == "library-desk-robin" and ada.identity == "dyad-ada"
            (greeting,) = finals(robin.transcriptions(), None)[:1]
            assert greeting.text == "Hello."  # only the first persona greets
            assert greeting.attributes["lk.transcribed_track_id"] == robin.publications[0].sid
            (answer,) = finals(ada.transcriptions(), None)[:1]
            assert answer.text and answer.attributes["lk.transcribed_track_id"] == ada.publications[0].sid
            (heard,) = finals(ada.transcriptions(), "visitor")
            assert "colo" in heard.text.lower()
            assert heard.attributes["lk.transcribed_track_id"] == mic_pubs[1].sid
            assert finals(robin.transcriptions(), "visitor") == []  # not Robin's turn: heard, not answered
            await until(lambda: ada.states()[-1] == "listening", "Ada listening again")
            states = robin.states()  # greeted; transcribed the question ("thinking") and let it go
            assert "speaking" in states and "speaking" not in states[states.index("thinking") :]
            assert {"listening", "thinking", "speaking"} <= set(ada.states())
            # Each listened to the other's voice as partner features (Robin's greeting, Ada's answer).
            assert all(a.listening is not None and a.listening.peer_heard_speaking for a in duo.avatars)
            duo.stop()
            await asyncio.wait_for(running, WAIT_S)
    finally:
        await models.aclose()
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not [t for t in leftover if t.get_name().startswith("dyad")], leftover
    assert all(not r.text_handlers for r in rooms)
