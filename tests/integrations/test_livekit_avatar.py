"""The drop-in AvatarSession: dyad's VideoGenerator over the real Engine in audio-driven mode (a tiny
randomly initialised joint-model checkpoint; no trained one is needed to check the plumbing), and the
AvatarSession wired into a real livekit-agents AgentSession whose TTS is real speech (Kokoro) and whose
LLM is scripted, in a recording room double: the session's speech plays through the avatar's tracks,
playback finishes and interruptions reach the session, the face listens to the user."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pytest
import pytest_asyncio
import torch
from livekit import rtc
from livekit.agents import Agent, AgentSession, APIConnectOptions, llm, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.voice.avatar import AudioSegmentEnd
from polling import waiter
from test_livekit_doubles import PlayedAudio, PlayedVideo, RecordingRoom, RemoteParticipant, ScriptedReader

from agent.persona import Persona, load_persona
from avatar_core.config import KOKORO_VOICES, AppSettings
from avatar_core.engine import Engine
from avatar_core.model.avflow import AVFlow
from avatar_core.model.config import SIZES, ModelConfig
from avatar_core.model.train import save_checkpoint
from avatar_core.render.process import RenderProcess
from avatar_core.text.frontend import VOCAB
from avatar_core.tts.kokoro import KokoroTTS
from integrations.livekit.avatar import AvatarError, AvatarSession, DyadVideoGenerator, _build_engine

pytestmark = pytest.mark.asyncio(loop_scope="module")
WAIT_S = 120.0  # generous on a slow shared machine; never a timing assertion
RATE = 24_000


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = AVFlow(ModelConfig.model_validate({**SIZES["tiny"], "voices": KOKORO_VOICES}), len(VOCAB))
    path: Path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, net, {"step": 0})
    return path


@pytest.fixture(scope="module")
def kokoro() -> KokoroTTS:
    return KokoroTTS(AppSettings().cache_dir)


def persona() -> Persona:
    data = load_persona("default").model_dump()
    data["appearance"]["video"].update({"width": 128, "height": 128})
    return Persona.model_validate(data)


until = waiter(WAIT_S, poll_s=0.02)


def tone(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (np.sin(2 * np.pi * 220 * t) * 8000 * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)
    return np.repeat(mono[:, None], channels, axis=1).reshape(-1)


def frames_of(pcm: np.ndarray, rate: int = RATE, channels: int = 1, ms: int = 10) -> list[rtc.AudioFrame]:
    step = rate * ms // 1000 * channels
    return [
        rtc.AudioFrame(pcm[i : i + step].tobytes(), rate, channels, pcm[i : i + step].size // channels)
        for i in range(0, pcm.size, step)
    ]


# ---------------------------------------------------------------------------------------------------
# The VideoGenerator on the real Engine
# ---------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def engine(tiny_checkpoint: Path) -> AsyncIterator[Engine]:
    built = await asyncio.to_thread(_build_engine, persona(), AppSettings(model=tiny_checkpoint))
    yield built
    await built.aclose()


class Collected:
    def __init__(self) -> None:
        self.items: list[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd] = []

    def audio(self) -> np.ndarray:
        frames = [np.frombuffer(f.data, np.int16) for f in self.items if isinstance(f, rtc.AudioFrame)]
        return np.concatenate(frames) if frames else np.zeros(0, np.int16)

    def ends(self) -> int:
        return sum(isinstance(f, AudioSegmentEnd) for f in self.items)

    def videos(self) -> list[rtc.VideoFrame]:
        return [f for f in self.items if isinstance(f, rtc.VideoFrame)]


@contextlib.asynccontextmanager
async def reading(gen: DyadVideoGenerator) -> AsyncIterator[Collected]:
    """Iterate the generator in the background (as the AvatarRunner does) while the test runs."""
    out = Collected()

    async def collect() -> None:
        async for item in gen:
            out.items.append(item)

    task = asyncio.create_task(collect())
    try:
        yield out
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_generator_plays_each_segment_exactly_and_reports_its_end(engine: Engine) -> None:
    gen = DyadVideoGenerator(engine)
    async with reading(gen) as out:
        await play_two_segments(gen, out)


async def play_two_segments(gen: DyadVideoGenerator, out: Collected) -> None:
    await until(lambda: len(out.videos()) >= 5, "idle video")
    assert out.audio().size == 0  # idle: video only, no audio is sent between speeches

    speech = tone(1.0)
    for frame in frames_of(speech):  # the TTS pushes faster than real time
        await gen.push_audio(frame)
    await gen.push_audio(AudioSegmentEnd())
    await until(lambda: out.ends() == 1, "the end of the segment")
    played = out.audio()
    assert played.size % 480 == 0 and all(
        isinstance(f, rtc.AudioFrame) and f.sample_rate == RATE and f.samples_per_channel == 480
        for f in out.items
        if isinstance(f, rtc.AudioFrame)
    )
    assert np.array_equal(played[: speech.size], speech)  # every sample, in order
    assert not played[speech.size :].any()  # the last frame is padded with silence
    end = next(i for i, f in enumerate(out.items) if isinstance(f, AudioSegmentEnd))
    assert all(not isinstance(f, rtc.AudioFrame) for f in out.items[end:])  # the end after the last audio
    video = out.videos()
    assert all((v.width, v.height, v.type) == (128, 128, rtc.VideoBufferType.RGB24) for v in video)
    first_audio = next(i for i, f in enumerate(out.items) if isinstance(f, rtc.AudioFrame))
    during = [f for f in out.items[first_audio:] if isinstance(f, rtc.VideoFrame)]
    assert 20 <= len(during) <= 30  # 25 fps while the second of speech plays

    # another rate and stereo are converted to 24 kHz mono
    before = out.audio().size
    for frame in frames_of(tone(0.5, 48_000, 2), 48_000, 2):
        await gen.push_audio(frame)
    await gen.push_audio(AudioSegmentEnd())
    await until(lambda: out.ends() == 2, "the end of the 48 kHz segment")
    assert abs((out.audio().size - before) - 0.5 * RATE) <= 480 + 64


async def test_clear_interrupts_the_speech_and_only_that_speech(engine: Engine) -> None:
    gen = DyadVideoGenerator(engine)
    async with reading(gen) as out:
        await interrupt_then_reply(gen, out)


async def interrupt_then_reply(gen: DyadVideoGenerator, out: Collected) -> None:
    for frame in frames_of(tone(3.0)):
        await gen.push_audio(frame)
    await until(lambda: out.audio().size >= RATE // 2, "half a second of speech")
    gen.interrupt()  # the receiver's clear_buffer event
    heard = out.audio().size
    await gen.push_audio(frames_of(tone(0.5))[0])  # the next reply starts before the runner's clear
    gen.clear_buffer()  # the runner's clear, a moment later: must not cut the new reply
    for frame in frames_of(tone(0.5))[1:]:
        await gen.push_audio(frame)
    await gen.push_audio(AudioSegmentEnd())
    await until(lambda: out.ends() == 1, "the new reply's end")
    total = out.audio().size
    assert heard < RATE  # the 3 s speech stopped
    assert total - heard <= 0.5 * RATE + 2 * 480  # then only the new reply played, whole
    assert total - heard >= 0.5 * RATE - 480


async def test_without_a_checkpoint_start_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(AvatarError, match="audio-driven mode: no joint-model checkpoint"):
        _build_engine(persona(), AppSettings(model=tmp_path / "none.pt"))


# ---------------------------------------------------------------------------------------------------
# Wired into a real AgentSession
# ---------------------------------------------------------------------------------------------------


class KokoroLiveKitTTS(tts.TTS[Literal["metrics_collected", "error"]]):
    """A livekit-agents TTS speaking with the bundled Kokoro (what an app's cloud TTS would be)."""

    def __init__(self, kokoro: KokoroTTS) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=RATE, num_channels=1)
        self.kokoro = kokoro

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _KokoroStream(tts=self, input_text=text, conn_options=conn_options)


class _KokoroStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        engine = cast(KokoroLiveKitTTS, self._tts)
        audio = await asyncio.to_thread(engine.kokoro.synthesize, self.input_text, "jf_alpha")
        output_emitter.initialize(
            request_id=utils.shortuuid("kokoro_"), sample_rate=RATE, num_channels=1, mime_type="audio/pcm"
        )
        output_emitter.push((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
        output_emitter.flush()


class ScriptedLLM(llm.LLM[Literal["metrics_collected", "error"]]):
    """Answers every turn with one scripted line."""

    def __init__(self, answer: str) -> None:
        super().__init__()
        self.answer = answer

    def chat(
        self, *, chat_ctx: llm.ChatContext, tools: Any = None, conn_options: Any = None, **_: Any
    ) -> Any:
        return _ScriptedStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options or DEFAULT_API_CONNECT_OPTIONS,
        )


class _ScriptedStream(llm.LLMStream):
    async def _run(self) -> None:
        answer = cast(ScriptedLLM, self._llm).answer
        for word in answer.split(" "):
            self._event_ch.send_nowait(
                llm.ChatChunk(id="scripted", delta=llm.ChoiceDelta(role="assistant", content=word + " "))
            )


def face_image() -> np.ndarray:
    from skimage.data import astronaut

    from avatar_core.motion import frame
    from avatar_core.render.portrait import PortraitRenderer

    photo: np.ndarray = astronaut()  # type: ignore[no-untyped-call]
    return PortraitRenderer(photo, 240, 240).render(frame(smile_l=0.6, smile_r=0.6))


async def test_an_agent_session_speaks_through_the_dyad_avatar(
    tiny_checkpoint: Path, kokoro: KokoroTTS
) -> None:
    room = RecordingRoom(identity="agent-AJ_1")
    local = room.local_participant
    session = AgentSession[None](
        llm=ScriptedLLM("We open at nine and close at six."), tts=KokoroLiveKitTTS(kokoro)
    )
    finished: list[Any] = []
    started: list[Any] = []

    avatar = AvatarSession(persona(), settings=AppSettings(model=tiny_checkpoint), reader=ScriptedReader())
    await avatar.start(session, room=cast(rtc.Room, room))  # the two lines an app adds
    await session.start(Agent(instructions="You are a library receptionist."))
    assert session.output.audio is avatar.audio_output
    assert avatar.avatar_identity == "agent-AJ_1" and avatar.provider == "dyad"
    assert avatar.audio_output is not None
    avatar.audio_output.on("playback_finished", finished.append)
    avatar.audio_output.on("playback_started", started.append)

    handle = session.say("Hello, I am Ada.")
    await asyncio.wait_for(handle.wait_for_playout(), WAIT_S)
    assert not handle.interrupted
    assert len(finished) == 1 and not finished[0].interrupted
    assert 0.8 < finished[0].playback_position < 3.0  # the speech itself, not the silence around it

    mic, camera = local.publications  # published as the agent itself, on the first frame
    assert mic.source == rtc.TrackSource.SOURCE_MICROPHONE and camera.source == rtc.TrackSource.SOURCE_CAMERA
    assert camera.options.video_encoding.max_framerate == 25
    await asyncio.wait_for(avatar.wait_for_join(), WAIT_S)  # the base class saw our camera track

    # A reply the user interrupts: playback stops, the session hears "interrupted" with the position.
    reply = session.generate_reply(user_input="When do you open?")
    await until(lambda: len(started) == 2, "the reply playing")
    await asyncio.sleep(0.5)
    reply.interrupt()
    await asyncio.wait_for(reply.wait_for_playout(), WAIT_S)
    assert reply.interrupted
    await until(lambda: len(finished) == 2, "playback finished, interrupted")
    assert finished[1].interrupted and 0.2 < finished[1].playback_position < 2.5
    await until(lambda: avatar.engine is not None and avatar.engine.state != "speaking", "silence")
    messages = [i for i in session.history.items if i.type == "message" and i.role == "assistant"]
    assert messages[-1].interrupted

    # Listening: the user's camera shows a face; the avatar attends to them and listens.
    user = RemoteParticipant("visitor")
    user.microphone(PlayedAudio(np.zeros(16_000 * 30, np.float32)))
    seen = PlayedVideo(face_image())
    user.camera(seen)
    room.join(user)
    assert avatar.feed is not None
    await until(lambda: avatar.feed is not None and avatar.feed.selector.current == "visitor", "attending")
    await until(lambda: avatar.engine is not None and avatar.engine.state == "listening", "a listening face")
    assert seen.frames > 0

    renderer = avatar.engine.renderer
    await session.aclose()
    await avatar.aclose()
    assert isinstance(renderer, RenderProcess) and renderer._process is None  # its child has ended
    assert sorted(local.unpublished) == sorted([mic.sid, camera.sid])
    assert session.output.audio is None
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not [t for t in leftover if "dyad" in t.get_name()], leftover


async def test_started_before_the_room_connects(tiny_checkpoint: Path) -> None:
    room = RecordingRoom(identity="agent-AJ_2")
    room.connected = False
    room.remote_participants["visitor"] = RemoteParticipant("visitor")  # there before we connect: no event
    session = AgentSession[None]()
    avatar = AvatarSession(persona(), settings=AppSettings(model=tiny_checkpoint), reader=ScriptedReader())
    await avatar.start(session, room=cast(rtc.Room, room))
    await asyncio.sleep(0.3)
    assert not room.local_participant.publications  # nothing is published before the room is connected
    assert avatar.feed is not None and avatar.feed.selector.current is None
    room.connected = True
    room.emit("connection_state_changed", rtc.ConnectionState.CONN_CONNECTED)
    await until(lambda: len(room.local_participant.publications) == 2, "the tracks, once connected")
    assert avatar.feed.selector.current == "visitor"
    await asyncio.wait_for(avatar.wait_for_join(), WAIT_S)
    await avatar.aclose()


async def test_the_face_hears_the_users_short_pauses(tiny_checkpoint: Path, kokoro: KokoroTTS) -> None:
    """The listener's voice flag comes from the avatar's own VAD: it falls in a 300 ms pause (a cue for a
    nod) even though the agent's user_state would stay "speaking" through it."""
    from scipy.signal import resample_poly

    def speech16(text: str) -> np.ndarray:
        audio = kokoro.synthesize(text, "jm_kumo")
        return resample_poly(audio, 2, 3).astype(np.float32)  # 24 kHz -> 16 kHz

    pause = np.zeros(int(0.3 * 16_000), np.float32)
    quiet = np.zeros(int(0.5 * 16_000), np.float32)
    clip = np.concatenate([quiet, speech16("I would like"), pause, speech16("to book a study room."), quiet])
    room = RecordingRoom(identity="agent-AJ_3")
    avatar = AvatarSession(persona(), settings=AppSettings(model=tiny_checkpoint), reader=ScriptedReader())
    await avatar.start(AgentSession[None](), room=cast(rtc.Room, room))
    heard: list[tuple[float, bool]] = []  # (seconds of audio, voice heard)
    push = avatar._features.push_audio

    def spy(samples: np.ndarray, t: float, speaking: bool) -> None:
        heard.append((samples.size / 16_000, speaking))
        push(samples, t, speaking)

    avatar._features.push_audio = spy  # type: ignore[method-assign]
    user = RemoteParticipant("visitor")
    played = PlayedAudio(clip)
    user.microphone(played)
    room.join(user)
    await until(lambda: sum(s for s, _ in heard) >= clip.size / 16_000, "the clip heard")
    played.ended.set()
    await avatar.aclose()
    flags = [voice for _, voice in heard]
    first, last = flags.index(True), len(flags) - 1 - flags[::-1].index(True)
    silent_inside = sum(s for s, voice in heard[first:last] if not voice)
    assert silent_inside >= 0.1, heard  # the pause, less Silero's fall time and the 64 ms hangover
    assert sum(s for s, voice in heard if voice) >= 1.0, heard  # the words themselves are heard as voice
