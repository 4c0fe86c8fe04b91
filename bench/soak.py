"""A long session in real time: does anything drift, grow or freeze? Prints JSON, writes
``bench/results/soak.json``.

    nice .venv/bin/python bench/soak.py [--minutes 60] [--report-every 5]

A simulated person (Kokoro speech in another voice) talks to the avatar through the real Session,
Engine and a transport (:class:`MeasuringTransport`, an :class:`~integrations.transport.AvatarTransport`
that plays frames out at the wall clock as a room's audio source does): questions, backchannels
("mm-hm") while the avatar answers, and barge-ins. Every ``--report-every`` minutes it prints RSS,
threads, open files, asyncio tasks, video frame gaps over 100 ms, audio/video drift (audio seconds sent
vs video frames sent / fps vs the wall clock) and voice-to-voice p50/p95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil
from scipy.signal import resample_poly

from agent.events import SessionEvent, TurnMetrics
from agent.persona import Persona, load_persona
from avatar_core.config import AppSettings
from avatar_core.frames import AUDIO_RATE, AudioFrame, OutputFrame
from avatar_core.tts.kokoro import KokoroTTS
from integrations.stack import AvatarStack, SharedModels, open_stack
from integrations.transport import USER_RATE, AvatarTransport

RESULTS = Path(__file__).parent / "results"
QUESTIONS = [
    "What time does the library open?", "Can I renew my books online?", "Where is the children's section?",
    "How much does printing cost?", "Do you have any study rooms free today?", "Is there a cafe nearby?",
    "How do I get a library card?", "Can I borrow a laptop?", "Are you open on Sunday?",
]  # fmt: skip
BACKCHANNEL = "Mm-hm."
GAP_S = 0.1
CHUNK = USER_RATE // 50  # 20 ms


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


@dataclass
class Meter:
    """What one session's output looked like on the wall clock."""

    started: float | None = None
    audio_samples: int = 0
    video_frames: int = 0
    last_video: float | None = None
    gaps_over_100ms: int = 0
    max_gap_ms: float = 0.0
    voice_to_voice_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class MeasuringTransport(AvatarTransport):
    """Frames are 'sent' when their time comes on the wall clock, and measured."""

    def __init__(self, stack: AvatarStack, meter: Meter) -> None:
        super().__init__(stack, name="soak")
        self.meter = meter

    async def send_frame(self, frame: OutputFrame) -> None:
        meter = self.meter
        now = time.monotonic()
        if meter.started is None:
            meter.started = now - frame.pts_s
        wait = meter.started + frame.pts_s - now
        if wait > 0:
            await asyncio.sleep(wait)  # a room's audio source plays out in real time the same way
        now = time.monotonic()
        if isinstance(frame, AudioFrame):
            meter.audio_samples += frame.samples.size
            return
        meter.video_frames += 1
        if meter.last_video is not None:
            gap = now - meter.last_video
            meter.max_gap_ms = max(meter.max_gap_ms, 1000 * gap)
            meter.gaps_over_100ms += gap > GAP_S
        meter.last_video = now

    def publish(self, event: SessionEvent) -> None:
        if isinstance(event, TurnMetrics) and event.first_audio is not None and not event.interrupted:
            self.meter.voice_to_voice_ms.append(event.first_audio)
        if event.type == "error":
            self.meter.errors.append(f"{event.source}: {event.message}")

    async def close_media(self) -> None:
        return None


def user_clips() -> tuple[list[npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    """The person's questions and backchannel as 16 kHz float32 speech (cached by Kokoro)."""
    tts = KokoroTTS(AppSettings().cache_dir)

    def speech(text: str) -> npt.NDArray[np.float32]:
        audio: npt.NDArray[np.float32] = resample_poly(tts.synthesize(text, "jm_kumo"), 2, 3).astype(
            np.float32
        )
        return audio  # 24 -> 16 kHz

    return [speech(q) for q in QUESTIONS], speech(BACKCHANNEL)


async def person(
    transport: MeasuringTransport,
    questions: list[npt.NDArray[np.float32]],
    backchannel: npt.NDArray[np.float32],
    until: float,
    seed: int,
) -> None:
    """Talk in real time until ``until`` (monotonic): a question, then while the answer plays either a
    backchannel, a barge-in (the next question over it) or nothing; silence is fed between."""
    rng = np.random.default_rng(seed)
    session = transport.session
    silence = np.zeros(CHUNK, np.float32)

    async def say(clip: npt.NDArray[np.float32]) -> None:
        for k in range(0, clip.size, CHUNK):
            await transport.push_user_audio(clip[k : k + CHUNK])
            await asyncio.sleep(CHUNK / USER_RATE)

    async def quiet(seconds: float, stop: Any = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (stop is not None and stop()):
            await transport.push_user_audio(silence)
            await asyncio.sleep(CHUNK / USER_RATE)

    turn = 0
    while time.monotonic() < until:
        await say(questions[turn % len(questions)])
        turn += 1
        await quiet(8.0, lambda: session.state == "speaking")  # wait for the answer to start
        kind = rng.choice(["listen", "backchannel", "barge-in"], p=[0.6, 0.25, 0.15])
        if kind == "backchannel":
            await quiet(1.0)
            await say(backchannel)
        elif kind == "barge-in":
            await quiet(1.5)
            continue  # the next question interrupts
        await quiet(30.0, lambda: session.state == "listening")
        await quiet(1.0)


def snapshot(meters: list[Meter], elapsed_s: float) -> dict[str, Any]:
    """The process and the sessions' output now."""
    process = psutil.Process()
    drift = []
    for m in meters:
        if m.started is None:
            continue
        audio_s = m.audio_samples / AUDIO_RATE
        wall_s = time.monotonic() - m.started
        drift.append(
            {
                "audio_minus_video_ms": round(1000 * (audio_s - m.video_frames / FPS[0]), 1),
                "audio_minus_wall_ms": round(1000 * (audio_s - wall_s), 1),
            }
        )
    v2v = [v for m in meters for v in m.voice_to_voice_ms]
    return {
        "minute": round(elapsed_s / 60, 2),
        "rss_mb": round(process.memory_info().rss / 2**20, 1),
        "threads": threading.active_count(),
        "os_threads": process.num_threads(),
        "open_files": process.num_fds(),
        "asyncio_tasks": len(asyncio.all_tasks()),
        "video_frames": sum(m.video_frames for m in meters),
        "gaps_over_100ms": sum(m.gaps_over_100ms for m in meters),
        "max_gap_ms": round(max((m.max_gap_ms for m in meters), default=0.0), 1),
        "drift": drift,
        "turns": len(v2v),
        "voice_to_voice_p50_ms": percentile(v2v, 50),
        "voice_to_voice_p95_ms": percentile(v2v, 95),
        "errors": sum(len(m.errors) for m in meters),
    }


FPS = [25.0]  # the persona's video fps, set by run_sessions


async def run_sessions(
    persona: Persona, n: int, minutes: float, report_every_min: float, label: str
) -> dict[str, Any]:
    """``n`` concurrent sessions sharing one set of models for ``minutes``; a snapshot every
    ``report_every_min`` minutes (printed) and the summary."""
    FPS[0] = float(persona.appearance.video.fps)
    questions, backchannel = await asyncio.to_thread(user_clips)
    process = psutil.Process()
    models = SharedModels()
    meters = [Meter() for _ in range(n)]
    reports: list[dict[str, Any]] = []
    try:
        async with _stacks(persona, models, n) as stacks:
            transports = [
                MeasuringTransport(stack, meter) for stack, meter in zip(stacks, meters, strict=True)
            ]
            for transport in transports:
                transport.start_output()
                await transport.session.start()
            started = time.monotonic()
            cpu_start = process.cpu_times()
            server = models.server
            server_proc = (
                psutil.Process(server._process.pid) if server is not None and server._process else None
            )
            server_cpu_start = server_proc.cpu_times() if server_proc else None
            until = started + 60 * minutes
            people = [
                asyncio.create_task(person(t, questions, backchannel, until, seed=k))
                for k, t in enumerate(transports)
            ]
            next_report = started + 60 * report_every_min
            while time.monotonic() < until:
                await asyncio.sleep(min(5.0, max(0.1, until - time.monotonic())))
                if time.monotonic() >= next_report:
                    reports.append(snapshot(meters, time.monotonic() - started))
                    print(json.dumps({label: reports[-1]}), flush=True)
                    next_report += 60 * report_every_min
            await asyncio.gather(*people, return_exceptions=True)
            elapsed = time.monotonic() - started
            final = snapshot(meters, elapsed)
            cpu = process.cpu_times()
            own = cpu.user + cpu.system - cpu_start.user - cpu_start.system
            llm = 0.0
            if server_proc is not None and server_cpu_start is not None:
                now = server_proc.cpu_times()
                llm = now.user + now.system - server_cpu_start.user - server_cpu_start.system
            for transport in transports:
                await transport.aclose()
    finally:
        await models.aclose()
    fps = [m.video_frames / elapsed for m in meters]
    return {
        "sessions": n,
        "minutes": round(elapsed / 60, 2),
        "fps_min": round(min(fps), 2),
        "cpu_cores_per_session": round((own + llm) / elapsed / n, 3),
        "rss_mb_per_session": round(final["rss_mb"] / n, 1),
        "final": final,
        "reports": reports,
        "errors": [e for m in meters for e in m.errors][:10],
    }


class _stacks:
    """``n`` avatar stacks on one set of shared models, opened and closed together."""

    def __init__(self, persona: Persona, models: SharedModels, n: int) -> None:
        self.persona, self.models, self.n = persona, models, n
        self._contexts: list[Any] = []

    async def __aenter__(self) -> list[AvatarStack]:
        stacks = []
        for seed in range(self.n):
            context = open_stack(self.persona, seed=seed, models=self.models)
            stacks.append(await context.__aenter__())
            self._contexts.append(context)
        return stacks

    async def __aexit__(self, *exc: object) -> None:
        for context in reversed(self._contexts):
            await context.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--report-every", type=float, default=5.0, help="minutes between snapshots")
    parser.add_argument("--persona", default="library_receptionist")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    persona = load_persona(args.persona)
    result = asyncio.run(run_sessions(persona, 1, args.minutes, args.report_every, "soak"))
    first = result["reports"][0] if result["reports"] else None
    final = result["final"]
    result["rss_growth_after_first_report"] = (
        round(final["rss_mb"] / first["rss_mb"] - 1, 4) if first else None
    )
    result["machine"] = {"cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
