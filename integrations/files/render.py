"""``dyad render``: text -> an MP4 of the avatar saying it (H.264 video + AAC audio of equal length).

The Engine runs on a virtual clock, exactly as live, so the file shows what a viewer would see: the
first chunk is synthesized small, the rest streams behind it. Timing is measured on the real wall clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.persona import Persona
from avatar_core.config import AppSettings
from avatar_core.engine import Engine, Utterance, VirtualClock, Voice
from avatar_core.frames import AudioFrame
from avatar_core.joint import JointVoice
from avatar_core.media import Mp4Writer
from avatar_core.render import make_renderer
from integrations.stack import build_voice

TAIL_S = 0.3  # listening after the last word, so the clip does not end mid-breath


class TimedVoice:
    """Wraps a voice and adds up the wall time of its synthesis."""

    def __init__(self, voice: Voice) -> None:
        self.voice = voice
        self.fps = voice.fps
        self.seconds = 0.0
        self.speech_s = 0.0

    def utterance(self, text: str) -> Utterance:
        start = time.perf_counter()
        out = self.voice.utterance(text)
        self.seconds += time.perf_counter() - start
        self.speech_s += out.duration_s
        return out


@dataclass(frozen=True)
class RenderResult:
    """What ``dyad render`` prints as its final JSON line."""

    duration_s: float  # length of the written file (audio = video)
    synth_s: float  # wall time spent synthesizing speech and motion
    rtf: float  # synth_s / seconds of speech synthesized
    first_chunk_ms: float  # wall time until the first chunk of speech was ready
    mode: str

    def to_dict(self) -> dict[str, float | str]:
        return {
            "duration_s": round(self.duration_s, 3),
            "synth_s": round(self.synth_s, 3),
            "rtf": round(self.rtf, 4),
            "first_chunk_ms": round(self.first_chunk_ms, 1),
            "mode": self.mode,
        }


async def render(
    text: str,
    persona: Persona,
    out: Path,
    mode: Literal["joint", "cascade"] | None = None,
    settings: AppSettings | None = None,
) -> RenderResult:
    """Write ``out`` and report timing."""
    if not text.strip():
        raise ValueError("--text is empty: give the words to say")
    settings = settings or AppSettings()
    mode = mode or persona.voice.mode
    fps = persona.appearance.video.fps
    (voice, driver), renderer = await asyncio.gather(
        asyncio.to_thread(build_voice, persona, settings, mode),
        asyncio.to_thread(make_renderer, persona.appearance),
    )
    actual = "joint" if isinstance(voice, JointVoice) else "cascade"
    timed = TimedVoice(voice)
    engine = Engine(timed, renderer, persona.behaviour, fps=fps, clock=VirtualClock(), driver=driver)
    await engine.warm_up()
    timed.seconds = timed.speech_s = 0.0
    writer = Mp4Writer(out, fps)
    handle = engine.say(text)
    end: float | None = None
    audio_s = 0.0
    try:
        async for frame in engine.frames():
            if isinstance(frame, AudioFrame):
                writer.write_audio(frame.samples)
                audio_s = frame.pts_s + frame.samples.size / 24_000
                if end is None and handle.done:
                    end = frame.pts_s + TAIL_S
                # Stop where audio and video end together: the video frames written so far cover
                # exactly the audio written so far.
                if end is not None and audio_s >= end and abs(writer.frames / fps - audio_s) < 1e-6:
                    break
            else:
                await asyncio.to_thread(writer.write_video, frame.image)
    finally:
        await engine.aclose()
        await asyncio.to_thread(writer.close)
    first = (handle.first_synthesis_s or 0.0) * 1000
    rtf = timed.seconds / timed.speech_s if timed.speech_s else float("nan")
    return RenderResult(audio_s, timed.seconds, rtf, first, actual)


def video_audio_durations(path: Path) -> tuple[float, float]:
    """Decoded (video, audio) durations of an MP4, in seconds (for checks and tests)."""
    import av

    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
        if rate is None:
            raise ValueError(f"{path}: the video stream has no frame rate")
        video = sum(1 for _ in container.decode(video=0)) / float(rate)
    with av.open(str(path)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
        sample_rate = container.streams.audio[0].sample_rate
    return video, samples / sample_rate
