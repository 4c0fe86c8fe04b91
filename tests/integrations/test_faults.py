"""Faults a live avatar must survive, with the real stack (Silero VAD, the joint model, the renderer,
the Engine and Session, the openai client) against an OpenAI-compatible server on 127.0.0.1 that the
test kills and restarts: the LLM server dropping a reply, the voice raising, user audio at odd rates and
channel counts, and API keys kept out of the logs. Errors become ``error`` events, which every transport
forwards (MQTT ``error``, LiveKit ``dyad.events`` data, the browser page's data channel); the avatar
keeps listening."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from polling import waiter

from agent.events import AgentTranscript, ErrorEvent, SessionEvent
from agent.persona import Persona, load_persona
from integrations.stack import open_stack
from integrations.transport import USER_RATE, UserAudio

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
