"""The files transport: a whole conversation on recorded user audio (and video), on a virtual clock.

The user's recording is fed to the Session in step with the Engine's 20 ms frames, so the run is faster
than real time and, for a seed, deterministic. Out come an MP4 (the avatar, the user's video beside it
when given, both voices mixed) and a JSON transcript with per-turn latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.events import AgentTranscript, SessionEvent, TurnMetrics, UserTranscript, to_dict
from agent.persona import Persona
from agent.session import Session
from avatar_core.config import AppSettings
from avatar_core.frames import AUDIO_RATE, AudioFrame, VideoFrame
from avatar_core.media import Mp4Writer, read_audio, video_frames
from integrations.stack import SharedModels, open_stack
from integrations.transport import USER_RATE

log = logging.getLogger(__name__)

MAX_TAIL_S = 90.0  # after the user's recording ends, the avatar may finish speaking for this long
USER_VIDEO_FPS = 10.0


@dataclass
class ConverseResult:
    """What a run produced."""

    duration_s: float
    video_frames: int
    turns: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)


class _UserVideo:
    """The user's video, advanced in step with engine time and resized to sit beside the avatar."""

    def __init__(self, path: Path, height: int) -> None:
        self.frames: Iterator[tuple[float, npt.NDArray[np.uint8]]] = video_frames(path)
        self.height = height
        self.current: npt.NDArray[np.uint8] | None = None
        self.current_t = -1.0
        self.next: tuple[float, npt.NDArray[np.uint8]] | None = next(self.frames, None)
        self.last_pushed = -1.0

    def advance(self, t: float) -> bool:
        """Move to the frame showing at ``t``; True if it changed."""
        changed = False
        while self.next is not None and self.next[0] <= t + 1e-9:
            self.current_t, self.current = self.next
            self.next = next(self.frames, None)
            changed = True
        return changed

    def beside(self, avatar: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The avatar frame with the user's current frame on its right, same height."""
        if self.current is None:
            width = avatar.shape[0] * 4 // 3
            return np.hstack([avatar, np.zeros((avatar.shape[0], width, 3), np.uint8)])
        h, w = self.current.shape[:2]
        width = max(2, round(w * self.height / h) // 2 * 2)
        user = cv2.resize(self.current, (width, self.height), interpolation=cv2.INTER_AREA)
        return np.hstack([avatar, user])


def _turns(events: list[SessionEvent]) -> list[dict[str, Any]]:
    """Group final transcripts and metrics by turn."""
    turns: dict[int, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, UserTranscript) and event.final:
            turns.setdefault(event.turn, {"turn": event.turn})["user"] = {
                "text": event.text, "start": round(event.start, 3), "end": round(event.end or event.t, 3)
            }  # fmt: skip
        elif isinstance(event, AgentTranscript) and event.final:
            turns.setdefault(event.turn, {"turn": event.turn})["agent"] = {
                "text": event.text, "end": round(event.t, 3), "interrupted": event.interrupted
            }  # fmt: skip
        elif isinstance(event, TurnMetrics):
            data = to_dict(event)
            latency = {k: data[k] for k in ("end_of_turn", "transcript", "first_token", "first_audio",
                                            "stt_ms", "llm_ttft_ms", "tts_first_chunk_ms")}  # fmt: skip
            turn = turns.setdefault(event.turn, {"turn": event.turn})
            turn["latency_ms"] = latency
            if event.answer is not None:  # how the reply was decided: agent.knowledge
                turn["answer"] = {"kind": event.answer, "source": event.answer_source,
                                  "score": event.answer_score}  # fmt: skip
    return [turns[k] for k in sorted(turns)]


async def converse(
    persona: Persona,
    user_audio: Path,
    out: Path,
    transcript: Path | None = None,
    user_video: Path | None = None,
    *,
    seed: int = 0,
    settings: AppSettings | None = None,
    models: SharedModels | None = None,
    on_session: Callable[[Session], None] | None = None,
) -> ConverseResult:
    """Run the conversation and write ``out`` (MP4) and ``transcript`` (JSON).

    ``models``: the process's shared models (the kiosk's, across its conversations), else this run
    loads its own; ``on_session`` sees the Session before it starts (the kiosk bridge attaches there)."""
    audio_16k = await asyncio.to_thread(read_audio, user_audio, USER_RATE)
    audio_24k = await asyncio.to_thread(read_audio, user_audio, AUDIO_RATE)
    user_end = audio_16k.size / USER_RATE
    events: list[SessionEvent] = []
    fps = persona.appearance.video.fps
    video = _UserVideo(user_video, persona.appearance.video.height) if user_video is not None else None
    writer = Mp4Writer(out, fps)
    t = 0.0
    try:
        async with open_stack(persona, settings, virtual=True, seed=seed, models=models) as stack:
            session, engine = stack.session, stack.engine
            session.on(events.append)
            if on_session is not None:
                on_session(session)
            await session.start()
            quiet_since: float | None = None
            async for frame in engine.frames():
                if isinstance(frame, VideoFrame):
                    image = video.beside(frame.image) if video is not None else frame.image
                    await asyncio.to_thread(writer.write_video, image)
                    continue
                assert isinstance(frame, AudioFrame)
                t = frame.pts_s
                a, b = round(t * USER_RATE), round((t + 0.02) * USER_RATE)
                chunk = audio_16k[a:b] if a < audio_16k.size else np.zeros(0, np.float32)
                chunk = np.pad(chunk, (0, b - a - chunk.size))
                c, d = round(t * AUDIO_RATE), round(t * AUDIO_RATE) + frame.samples.size
                mixed = frame.samples.astype(np.int32)
                if c < audio_24k.size:
                    user = (audio_24k[c:d] * 32767).astype(np.int32)
                    mixed[: user.size] += user
                writer.write_audio(np.clip(mixed, -32768, 32767).astype(np.int16))
                await session.push_audio(chunk, t)
                if (
                    video is not None
                    and video.advance(t)
                    and t - video.last_pushed >= 1 / USER_VIDEO_FPS - 1e-9
                ):
                    assert video.current is not None
                    video.last_pushed = t
                    await session.push_video(video.current, t)
                if t >= user_end:
                    busy = session.state in ("thinking", "speaking") or engine.speaking
                    quiet_since = None if busy else (quiet_since if quiet_since is not None else t)
                    if (quiet_since is not None and t - quiet_since >= 1.0) or t - user_end > MAX_TAIL_S:
                        break
    finally:
        await asyncio.to_thread(writer.close)
    result = ConverseResult(round(t, 3), writer.frames, _turns(events), [to_dict(e) for e in events])
    if transcript is not None:
        payload = {
            "persona": persona.identity.display_name,
            "seed": seed,
            "user_audio": str(user_audio),
            "duration_s": result.duration_s,
            "turns": result.turns,
            "events": result.events,
        }
        transcript.parent.mkdir(parents=True, exist_ok=True)
        transcript.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    return result
