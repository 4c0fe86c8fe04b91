"""Faults a live avatar must survive, with the real stack (Silero VAD, the joint model, the renderer,
the Engine and Session, the openai client) against an OpenAI-compatible server on 127.0.0.1 that the
test kills and restarts: the LLM server dropping a reply, the voice raising, Whisper raising mid-turn
(spoken turns through a transport), user audio at odd rates and channel counts, and API keys kept out of
the logs. Errors become ``error`` events, which every transport
forwards (MQTT ``error``, LiveKit ``dyad.events`` data, the browser page's data channel); the avatar
keeps listening."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from polling import waiter
from scipy.signal import resample_poly

from agent.events import AgentTranscript, ErrorEvent, SessionEvent, UserTranscript
from agent.persona import Persona, load_persona
from agent.stt import Transcript, WhisperSTT
from avatar_core.config import AppSettings
from avatar_core.frames import OutputFrame
from avatar_core.tts.kokoro import KokoroTTS
from integrations.stack import AvatarStack, open_stack
from integrations.transport import USER_RATE, AvatarTransport, UserAudio

WAIT_S = 180.0  # the machine is slow and shared; generous, never a timing assertion
ANSWER = "We open at nine."
SECRET = "sk-dyad-test-0123456789abcdef"
KEY_ENV = "DYAD_FAULT_TEST_KEY"


def _chunk(content: str, finish: str | None = None) -> bytes:
    delta = {"role": "assistant", "content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeLLM:
    """An OpenAI-compatible streaming server that answers :data:`ANSWER`, or (``die``) starts a reply
    and drops the connection, as a killed server does; ``stop``/``start`` kill and restart it."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.die = False
        self.died = asyncio.Event()
        self.auth: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        self.auth.append(request.headers.get("Authorization", ""))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk(""))
        if self.die:
            assert request.transport is not None
            request.transport.abort()  # mid-reply: the connection goes away
            self.died.set()
            return response
        for word in ANSWER.split(" "):
            await response.write(_chunk(word + " "))
        await response.write(_chunk("", "stop"))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def persona(base_url: str) -> Persona:
    data = load_persona("default").model_dump()
    data["llm"].update({"base_url": base_url, "api_key_env": KEY_ENV, "greeting": "", "max_retries": 2})
    data["appearance"]["video"].update({"width": 128, "height": 128})
    return Persona.model_validate(data)


until = waiter(WAIT_S)


def finals(events: list[SessionEvent]) -> list[AgentTranscript]:
    return [e for e in events if isinstance(e, AgentTranscript) and e.final]


def errors(events: list[SessionEvent], source: str) -> list[ErrorEvent]:
    return [e for e in events if isinstance(e, ErrorEvent) and e.source == source]


async def test_llm_killed_voice_failing_and_keys_kept_out_of_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything any library logs, headers included
    monkeypatch.setenv(KEY_ENV, SECRET)
    llm = FakeLLM()
    await llm.start()
    config = persona(llm.base_url)
    events: list[SessionEvent] = []
    try:
        async with open_stack(config) as stack:
            session = stack.session
            session.on(events.append)
            pump = asyncio.create_task(_drain(stack.engine.frames()))

            # 1. The LLM server dies mid-reply and stays down: the fallback line, an llm error event.
            llm.die = True
            killing = asyncio.create_task(_stop_when_died(llm))
            await session.submit_text("When do you open?")
            await until(lambda: len(finals(events)) == 1, "the fallback line")
            await killing
            assert finals(events)[0].text == config.llm.fallback_line
            assert errors(events, "llm") and errors(events, "llm")[0].recoverable
            await until(lambda: session.state == "listening", "listening again")

            # 2. It is back: the next turn is answered.
            llm.die = False
            await llm.start()
            await session.submit_text("When do you open?")
            await until(lambda: len(finals(events)) == 2, "the answer")
            assert finals(events)[1].text == ANSWER

            # 3. The voice raises: a tts error event (what the transports forward), then listening.
            voice = stack.engine.voice

            def broken(text: str) -> Any:
                raise RuntimeError("the vocoder ran out of memory")

            monkeypatch.setattr(voice, "utterance", broken)
            await session.submit_text("And on Sundays?")
            await until(lambda: len(errors(events, "tts")) == 1, "the voice's error event")
            assert "vocoder" in errors(events, "tts")[0].message
            await until(lambda: session.state == "listening", "listening after the voice failed")
            monkeypatch.undo()
            monkeypatch.setenv(KEY_ENV, SECRET)
            await session.submit_text("When do you open?")
            await until(lambda: len(finals(events)) == 4, "an answer with the voice back")
            assert finals(events)[-1].text == ANSWER
            pump.cancel()
    finally:
        await llm.stop()
    assert llm.auth and all(a == f"Bearer {SECRET}" for a in llm.auth)  # the key was used...
    assert SECRET not in caplog.text  # ...and never logged
    assert SECRET[-12:] not in caplog.text


async def _drain(frames: Any) -> None:
    async for _ in frames:
        pass


async def _stop_when_died(llm: FakeLLM) -> None:
    await llm.died.wait()
    await llm.stop()  # killed: retries find nothing listening


class ClientTransport(AvatarTransport):
    """The smallest real transport: frames go nowhere, every Session event is what a client receives
    (``publish`` is the hook each transport forwards from: MQTT ``error``, LiveKit ``dyad.events``, the
    page's data channel); a microphone pushes 20 ms of 16 kHz audio every 20 ms, speech when queued."""

    def __init__(self, stack: AvatarStack) -> None:
        super().__init__(stack, name="client")
        self.received: list[SessionEvent] = []
        self._speech: deque[npt.NDArray[np.float32]] = deque()

    async def send_frame(self, frame: OutputFrame) -> None:
        return None

    def publish(self, event: SessionEvent) -> None:
        self.received.append(event)

    async def close_media(self) -> None:
        return None

    def say(self, clip: npt.NDArray[np.float32]) -> None:
        chunk = USER_RATE // 50
        self._speech.extend(clip[k : k + chunk] for k in range(0, clip.size, chunk))

    async def microphone(self) -> None:
        chunk = USER_RATE // 50
        due = time.monotonic()
        while True:
            due += chunk / USER_RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            samples = self._speech.popleft() if self._speech else np.zeros(chunk, np.float32)
            await self.push_user_audio(samples)


def spoken(text: str) -> npt.NDArray[np.float32]:
    """``text`` as the user says it: Kokoro speech at 16 kHz with a second of silence after, (S,)."""
    audio = KokoroTTS(AppSettings().cache_dir).synthesize(text, "jm_kumo")  # (S,) 24 kHz
    speech = np.asarray(resample_poly(audio, 2, 3), np.float32)
    return np.concatenate([speech, np.zeros(USER_RATE, np.float32)])


async def test_stt_raising_mid_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whisper raises while the user's turn is recognised: the client gets an ``stt`` error event and
    the fallback line, the avatar listens again, and the next spoken turn is recognised and answered."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    llm = FakeLLM()
    await llm.start()
    config = persona(llm.base_url)
    question = await asyncio.to_thread(spoken, "When do you open on Saturdays?")
    try:
        async with open_stack(config) as stack:
            stt = stack.stt
            assert isinstance(stt, WhisperSTT)
            real = stt._transcribe_blocking
            broken = [True]

            def flaky(model: Any, samples: npt.NDArray[np.float32]) -> Transcript:
                if broken[0]:
                    raise RuntimeError("the Whisper decoder crashed")
                return real(model, samples)

            monkeypatch.setattr(stt, "_transcribe_blocking", flaky)
            client = ClientTransport(stack)
            client.start_output()
            await stack.session.start()
            mic = asyncio.create_task(client.microphone())
            events = client.received

            # 1. The turn's recognition raises: an stt error reaches the client, the fallback line is said.
            client.say(question)
            await until(lambda: bool(errors(events, "stt")), "the stt error event")
            error = errors(events, "stt")[0]
            assert error.recoverable and "decoder crashed" in error.message
            await until(lambda: bool(finals(events)), "the fallback line")
            assert finals(events)[0].text == config.llm.fallback_line
            await until(lambda: stack.session.state == "listening", "listening after the stt failure")
            failures = len(errors(events, "stt"))

            # 2. Whisper works again: the next spoken turn is recognised and answered by the LLM.
            broken[0] = False
            client.say(question)
            await until(lambda: len(finals(events)) == 2, "the answer to the next turn")
            heard = [e for e in events if isinstance(e, UserTranscript) and e.final and e.text]
            assert heard and "open" in heard[-1].text.lower()
            assert finals(events)[1].text == ANSWER
            assert len(errors(events, "stt")) == failures  # nothing failed the second time
            mic.cancel()
            await client.aclose()
    finally:
        await llm.stop()


@pytest.mark.parametrize(("rate", "channels"), [(48_000, 2), (44_100, 1), (8_000, 1), (24_000, 6)])
def test_user_audio_at_any_rate_and_channel_count(rate: int, channels: int) -> None:
    """A transport delivering an unexpected format still gives the Session 16 kHz mono speech."""
    audio = UserAudio()
    seconds = 1.0
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)  # (S,)
    pcm = np.repeat(tone[:, None], channels, axis=1).reshape(-1)  # interleaved (S * channels,)
    out = np.concatenate(
        [
            audio.push_pcm(pcm[k : k + rate // 50 * channels], rate, channels)
            for k in range(0, pcm.size, rate // 50 * channels)
        ]
    )
    assert out.dtype == np.float32
    assert abs(out.size - USER_RATE * seconds) <= USER_RATE * 0.05  # resampler latency only
    spectrum = np.abs(np.fft.rfft(out[USER_RATE // 10 :]))
    peak_hz = np.argmax(spectrum) * USER_RATE / (2 * (spectrum.size - 1))
    assert abs(peak_hz - 440) < 5  # the same tone, not sped up or slowed down
    assert 0.3 < float(np.abs(out).max()) <= 1.0
