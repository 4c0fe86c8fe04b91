"""Voice-to-voice latency of the embedded stack in real time. Prints JSON.

    .venv/bin/python bench/latency.py [--mode joint|cascade] [--turns 20] [--barge-ins 5]

A simulated user (Kokoro speech, another voice) asks questions through the Session exactly as a live
transport would, paced by the Engine's real clock; each question waits until the avatar has answered the
one before and finished (or, for a question it never answers, ``PATIENCE_S``), then 1 s more. The last
``--barge-ins`` questions instead interrupt the avatar 1.5 s into its answer.
Reported: voice to voice (the question's last audible sound -> first avatar audio, as the user waits) p50/p95,
and the Session's breakdown (counted from the VAD's speech end, some tens of ms later), barge-in
stop time (user speech onset -> first silent avatar frame), CPU use (this process and the LLM server)
and peak RSS; the voice the Engine really used (the joint model, or Kokoro when the checkpoint is
missing) and the turn detector that ended the turns. Written to ``bench/results/latency_<mode>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from bisect import bisect_left
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil
from scipy.signal import resample_poly

from agent.events import SessionEvent, TurnMetrics
from agent.persona import Persona, load_persona
from avatar_core.config import AppSettings
from avatar_core.frames import AudioFrame
from avatar_core.render.process import RenderProcess
from avatar_core.speech.prosody import sound_end_s
from avatar_core.tts.kokoro import KokoroTTS
from integrations.lifecycle import prepare_process
from integrations.stack import open_stack

QUESTIONS = [
    "What time does the library open?", "Can I renew my books online?", "Where is the children's section?",
    "How much does printing cost?", "Do you have any study rooms free today?", "Is there a cafe nearby?",
    "How do I get a library card?", "Can I borrow a laptop?", "Are you open on Sunday?",
    "Where can I find books about birds?", "How long can I keep a book?", "Is there free wifi here?",
    "Can I return books after closing time?", "Do you have newspapers?", "Where are the toilets?",
    "Can I book a room for a meeting?", "Do you sell stamps?", "Who can help me with the computer?",
    "How many books can I borrow?", "Thank you, that was helpful.",
]  # fmt: skip
RATE = 16_000
# How long the simulated user waits for an answer that does not come before asking the next question. A
# person waits more than a second: a turn the Session holds longer (the words' veto, veto_wait_ms) is
# measured, not talked over (before 2026-12-06 afternoon the next question came 1 s after the last).
PATIENCE_S = 5.0


def speech_end(audio: npt.NDArray[np.float32]) -> float:
    """End of the last 10 ms frame of 16 kHz ``audio`` (S,) within 40 dB of its loudest (seconds): the last
    audible sound, where a listener hears the speech end (``avatar_core.speech.prosody.sound_end_s``)."""
    end = sound_end_s(audio, RATE)
    if end is None:
        raise ValueError("the audio is silent: it has no last sound")
    return end


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def command_line(script: str) -> str:
    """How ``script`` (a path under bench/) was run, for its result file."""
    return " ".join([".venv/bin/python", script, *map(shlex.quote, sys.argv[1:])])


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Print a benchmark's result as JSON and, with ``out``, write it there too."""
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)


STAGES = (
    "end_of_turn",
    "transcript",
    "first_token",
    "first_audio",
    "stt_ms",
    "llm_ttft_ms",
    "tts_first_chunk_ms",
)


async def run(turns: int, barge_ins: int, persona: Persona) -> dict[str, object]:
    tts = KokoroTTS(AppSettings().cache_dir)
    clips = [resample_poly(tts.synthesize(q, "jm_kumo"), 2, 3).astype(np.float32) for q in QUESTIONS[:turns]]
    events: list[SessionEvent] = []
    stop_times: list[float] = []
    process = psutil.Process()
    peak_rss = 0
    async with open_stack(persona) as stack:
        session, engine = stack.session, stack.engine
        session.on(events.append)
        # When each reply was first heard: its "speaking" state is stamped with its first audio sample's time.
        speaking: list[float] = []
        session.on(lambda e: speaking.append(e.t) if getattr(e, "state", "") == "speaking" else None)
        await session.start()
        voice = type(engine.voice).__name__
        detector = session.turn_detector
        turn_detector = (
            "smart_turn (Smart Turn v3.2)"
            if detector is not None and detector.semantic
            else f"silence ({persona.turn_taking.end_of_turn_silence_ms} ms)"
        )
        if session.text_turn is not None:
            turn_detector += f" + the words' veto (SmolLM2, below {persona.turn_taking.text_veto_below})"
        server = psutil.Process(stack.server._process.pid) if stack.server and stack.server._process else None
        renderer = stack.engine.renderer
        drawing = (
            psutil.Process(renderer.pid) if isinstance(renderer, RenderProcess) and renderer.pid else None
        )
        cpu0 = process.cpu_times()
        server_cpu0 = server.cpu_times() if server else None
        render_cpu0 = drawing.cpu_times() if drawing else None
        wall0 = time.monotonic()
        index, clip, pos = 0, None, 0
        wait_until = 1.0
        onset: float | None = None
        barge = False
        asked_until = 0.0  # when the last question's audio ended
        said_until: float | None = None  # the last audible sound of the question being answered
        heard_after: dict[int, float] = {}  # question -> its first avatar audio, ms after that sound
        async for frame in engine.frames():
            if not isinstance(frame, AudioFrame):
                continue
            t = frame.pts_s
            # Stopped: from the first frame after the onset at which playback is held or dropped (a
            # silent frame alone could be a gap between synthesized chunks).
            if onset is not None and t >= onset and (engine.paused or not engine.speaking):
                stop_times.append(1000 * (t - onset))
                onset = None
            if said_until is not None and clip is None:  # the question asked: when was its answer heard?
                heard = bisect_left(speaking, said_until)
                if heard < len(speaking):
                    heard_after[index - 1] = round(1000 * (speaking[heard] - said_until), 1)
                    said_until = None
            if clip is None and index < turns:
                barge = index >= turns - barge_ins
                avatar_busy = engine.speaking or session.state != "listening"
                # The answer to the last question (not an earlier reply: the avatar may be "speaking" with
                # this answer queued but not yet heard).
                heard_answer = bool(speaking) and speaking[-1] >= asked_until
                waited = index == 0 or heard_answer or t >= asked_until + PATIENCE_S
                ready = (not avatar_busy and t >= wait_until and waited) or (
                    barge and engine.speaking and heard_answer and t - speaking[-1] >= 1.5
                )
                if ready:
                    clip, pos = clips[index], 0
                    onset = (
                        t + float(np.argmax(np.abs(clip) > 0.02)) / RATE
                        if barge and engine.speaking
                        else None
                    )
                    said_until = None if barge else t + speech_end(clip)
                    index += 1
            if clip is not None:
                chunk = clip[pos : pos + 320]
                pos += 320
                if pos >= clip.size:
                    clip, wait_until, asked_until = None, t + 1.0, t
            else:
                chunk = np.zeros(0, np.float32)
            await session.push_audio(np.pad(chunk, (0, 320 - chunk.size)), t)
            if int(t * 50) % 50 == 0:
                rss = process.memory_info().rss + (server.memory_info().rss if server else 0)
                peak_rss = max(peak_rss, rss)
            done = [e for e in events if isinstance(e, TurnMetrics)]
            if index >= turns and clip is None and len(done) >= turns and not engine.speaking:
                break
            if t > 60 * turns:
                break
        wall = time.monotonic() - wall0
        underruns = engine.underruns  # gaps inside replies: later chunks not ready in time
        cpu1 = process.cpu_times()
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall
        server_cpu = None
        if server and server_cpu0:
            s1 = server.cpu_times()
            server_cpu = (s1.user + s1.system - server_cpu0.user - server_cpu0.system) / wall
        render_cpu = None
        if drawing and render_cpu0:
            r1 = drawing.cpu_times()
            render_cpu = (r1.user + r1.system - render_cpu0.user - render_cpu0.system) / wall
    metrics = [e for e in events if isinstance(e, TurnMetrics) and not e.interrupted]
    answered = [m for m in metrics if m.first_audio is not None][: turns - barge_ins]

    def column(name: str) -> list[float]:
        return [v for m in answered if (v := getattr(m, name)) is not None]

    breakdown = {name: {"p50": percentile(column(name), 50), "p95": percentile(column(name), 95)}
                 for name in STAGES}  # fmt: skip
    return {
        "bench": "latency",
        "command": command_line("bench/latency.py"),
        "date": date.today().isoformat(),
        "mode": "real-time, embedded stack (Silero VAD, Whisper tiny.en, SmolLM2-135M)",
        "voice": {
            "asked": persona.voice.mode,
            "used": {"JointVoice": "joint (AV-Flow)", "CascadeVoice": "cascade (Kokoro)"}.get(voice, voice),
        },
        "turn_detector": turn_detector,
        "turn_taking": persona.turn_taking.model_dump(),
        "cpus": os.cpu_count(),
        "turns_measured": len(answered),
        # From the question's last audible sound to the avatar's first audio: what the user waits. The
        # Session's own figures (the breakdown) count from the VAD's speech end, which comes later.
        "voice_to_voice_ms": {
            "p50": percentile(list(heard_after.values()), 50),
            "p95": percentile(list(heard_after.values()), 95),
            "n": len(heard_after),
        },
        "voice_to_voice_by_question_ms": [heard_after.get(i) for i in range(turns - barge_ins)],
        "voice_to_voice_from_vad_end_ms": {
            "p50": percentile(column("first_audio"), 50),
            "p95": percentile(column("first_audio"), 95),
        },
        "breakdown_ms": breakdown,
        "barge_in_stop_ms": {
            "n": len(stop_times),
            "p50": percentile(stop_times, 50),
            "max": round(max(stop_times), 1) if stop_times else None,
        },
        "cpu_cores": {
            "dyad": round(cpu, 2),
            "llm_server": None if server_cpu is None else round(server_cpu, 2),
            "render_process": None if render_cpu is None else round(render_cpu, 2),
        },
        "speech_underruns": {"count": underruns[0], "seconds": underruns[1]},
        "per_turn_ms": [{name: getattr(m, name) for name in STAGES} for m in answered],  # what makes a p95
        "peak_rss_mb": round(peak_rss / 2**20),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    prepare_process()  # as `dyad` does: the product's memory and threads, measured
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--barge-ins", type=int, default=5)
    parser.add_argument("--persona", default="default")
    parser.add_argument(
        "--mode", choices=["joint", "cascade"], default=None, help="the voice (default: the persona's)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/latency_<mode>.json")
    args = parser.parse_args()
    base = load_persona(args.persona)
    data = base.model_dump()
    data["llm"].update({"greeting": "", "max_tokens": 40})
    if args.mode is not None:
        data["voice"]["mode"] = args.mode
    persona = Persona.model_validate(data, context={"base_dir": Path.cwd()})
    result = asyncio.run(run(args.turns, args.barge_ins, persona))
    text = json.dumps(result, indent=2)
    out = args.out or Path(__file__).parent / "results" / f"latency_{persona.voice.mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
