"""Learned listening against the teacher's, on the same scenes. Prints JSON and writes
bench/results/listening.json.

    nice .venv/bin/python bench/listening.py [--lines 4] [--height 128] [--seed 0]

Two inputs, each run once with ``behaviour.listening: teacher`` and once with ``model`` (the same seed):

* scene: the first ``--lines`` lines of ``examples/dialogue_reception.yaml`` played by ``dyad dialogue``'s
  :func:`~integrations.files.dialogue.dialogue` (both avatars listen in the mode under test);
* recorded user: Kokoro speaks a visitor's turn of three sentences with pauses of
  ``USER_PAUSES_S`` between them; the receptionist only listens, perceiving the voice as it would a
  person's microphone (:class:`~integrations.files.dialogue.AvatarPartner`, no face), on the real clock
  as live (the model's listening blocks are generated one block ahead in real time, as in a room).

The scene runs on ``dyad dialogue``'s virtual clock, which does not wait for the model's listening
blocks: where one is late the last learned frame is held or the teacher's layer fills in
(``avatar_core/engine/listening.py``), so the scene's model figures mix the model with those frames.

Each gets :mod:`avatar_core.eval.listener` metrics; :func:`avatar_core.eval.listening_compare.verdict`
says whether the model may be the default (targets: >= 60% of pauses over 300 ms answered by a
backchannel, mouth at rest >= 95% of silent frames, and the persona's knobs acting on the model).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.persona import Persona, load_persona
from avatar_core.config import AppSettings
from avatar_core.engine import Engine, RealClock
from avatar_core.eval.listening_compare import MODES, recorded_user_report, verdict
from avatar_core.frames import AUDIO_FRAME_S, AUDIO_RATE, AudioFrame, VideoFrame
from avatar_core.motion import FloatArray
from avatar_core.render import make_renderer
from avatar_core.tts.kokoro import KokoroTTS
from integrations.files.dialogue import AvatarPartner, ScriptedLines, dialogue, read_script, speaker_names
from integrations.stack import SharedModels, build_voice

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "listening.json"
SCRIPT = ROOT / "examples" / "dialogue_reception.yaml"
PERSONAS = ("library_receptionist", "default")
USER_VOICE = "jm_kumo"
USER_TURN = (
    "Hi, I am looking for a book about the history of the city.",
    "My grandmother grew up near the old harbour, and I want to know what it looked like back then.",
    "Do you have anything with photographs?",
)
USER_PAUSES_S = (0.7, 0.9)  # silences between the sentences: pauses, not the end of the turn
LEAD_S, TAIL_S = 0.5, 1.0
# ModelListening (avatar_core/engine/listening.py) is built from the joint model and the frame rate
# only: the persona's behaviour knobs never reach it, so they cannot act on the model's listening.
KNOBS_ACT_ON_MODEL = False


def with_listening(persona: Persona, mode: str, height: int) -> Persona:
    """The persona listening with ``mode``, ``height`` pixels high (small: the bench measures motion)."""
    data = persona.model_dump()
    data["behaviour"]["listening"] = mode
    video = data["appearance"]["video"]
    video["width"] = max(2, round(video["width"] * height / video["height"]) // 2 * 2)
    video["height"] = height
    return Persona.model_validate(data)


def user_turn(settings: AppSettings) -> npt.NDArray[np.int16]:
    """The recorded user: (S,) int16 at 24 kHz, quiet lead, three sentences with pauses, quiet tail."""
    tts = KokoroTTS(settings.cache_dir)
    parts = [np.zeros(round(LEAD_S * AUDIO_RATE), np.float32)]
    for k, sentence in enumerate(USER_TURN):
        parts.append(tts.synthesize(sentence, USER_VOICE))
        gap = USER_PAUSES_S[k] if k < len(USER_PAUSES_S) else TAIL_S
        parts.append(np.zeros(round(gap * AUDIO_RATE), np.float32))
    wave = np.concatenate(parts)
    return (np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)


async def listen_to(
    persona: Persona, audio: npt.NDArray[np.int16], settings: AppSettings, models: SharedModels, seed: int
) -> FloatArray:
    """The persona's motion (T, D) while it listens to ``audio`` (S,) at 24 kHz, paced in real time."""
    joint = await models.joint_model()
    (voice, driver), renderer = await asyncio.gather(
        asyncio.to_thread(build_voice, persona, settings, None, joint),
        asyncio.to_thread(make_renderer, persona.appearance),
    )
    fps = persona.appearance.video.fps
    engine = Engine(voice, renderer, persona.behaviour, fps=fps, clock=RealClock(), seed=seed,
                    driver=driver, listener=joint)  # fmt: skip
    partner = await asyncio.to_thread(AvatarPartner, persona.turn_taking)
    frames = engine.frames()
    tick = round(AUDIO_FRAME_S * AUDIO_RATE)
    motion: list[FloatArray] = []
    try:
        for k in range(math.ceil(audio.size / tick)):
            t = k * AUDIO_FRAME_S
            frame = await anext(frames)
            assert isinstance(frame, AudioFrame), "the Engine yields an audio frame first on each tick"
            chunk = audio[k * tick : (k + 1) * tick]
            await asyncio.to_thread(partner.hear, chunk)
            engine.observe_user(partner.frame(t + AUDIO_FRAME_S))
            while len(motion) / fps < t + AUDIO_FRAME_S - 1e-9:
                video = await anext(frames)
                assert isinstance(video, VideoFrame), "the Engine yields the video frames of a tick"
                motion.append(video.motion)
    finally:
        await engine.aclose()
    return np.stack(motion).astype(np.float32)


def _finite(value: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


async def run(lines: int, height: int, seed: int) -> dict[str, Any]:
    settings = AppSettings()
    base = [load_persona(name) for name in PERSONAS]
    names = [speaker_names(p, given) for p, given in zip(base, PERSONAS, strict=True)]
    script = read_script(SCRIPT, names)[:lines]
    audio = user_turn(settings)
    results: dict[str, dict[str, Any]] = {mode: {} for mode in MODES}
    timing: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
    models = SharedModels(settings)
    try:
        for mode in MODES:
            personas = [with_listening(p, mode, height) for p in base]
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                scene = await dialogue(personas, ScriptedLines(script), Path(tmp) / "scene.mp4",
                                       seed=seed, settings=settings, models=models)  # fmt: skip
            metrics = dict(scene.metrics)
            metrics["duration_s"] = scene.duration_s
            results[mode]["scene"] = metrics
            timing[mode]["scene_wall_s"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            motion = await listen_to(personas[0], audio, settings, models, seed)
            user = recorded_user_report(audio, AUDIO_RATE, motion, personas[0].appearance.video.fps)
            user["duration_s"] = round(audio.size / AUDIO_RATE, 3)
            results[mode]["recorded_user"] = user
            timing[mode]["recorded_user_wall_s"] = round(time.perf_counter() - started, 1)
    finally:
        await models.aclose()
    out: dict[str, Any] = _finite({
        "command": "nice .venv/bin/python bench/listening.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "scene": f"{SCRIPT.relative_to(ROOT)}, first {lines} lines, personas {' + '.join(PERSONAS)}",
        "recorded_user": {"voice": USER_VOICE, "text": list(USER_TURN), "pauses_s": list(USER_PAUSES_S),
                          "listener": PERSONAS[0]},
        "notes": [
            "recorded_user runs on the real clock, as live; the scene on dyad dialogue's virtual clock, "
            "where late model listening blocks are filled by held or teacher frames",
            "lip_closure_f1 is the speakers' lip sync, the same in both modes (speech does not depend on "
            "the listening mode)",
        ],
        "results": results,
        "wall": timing,
        "verdict": verdict(results, KNOBS_ACT_ON_MODEL),
    })  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=4, help="lines of the example scene to play")
    parser.add_argument(
        "--height", type=int, default=128, help="video height of the faces (motion is measured)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.lines, args.height, args.seed))
    text = json.dumps(result, indent=2)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
