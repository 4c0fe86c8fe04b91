"""``dyad train eval``: the teacher, the representation ceiling, dyad joint and dyad cascade side by side
on held-out text, per voice, in one run.

* **teacher**: Kokoro-82M speech with the procedural teacher's motion from Kokoro's exact phone timing
  (what the model was trained to imitate);
* **ceiling**: the teacher's speech analysed into our speech features and resynthesised by our vocoder
  (speech only): the best a perfect joint model could sound. Every change to the representation is
  judged by it first, before any training;
* **joint**: the AV-Flow checkpoint, text -> speech features + motion, and the chosen vocoder (the
  trained network or pyworld, the same one as the ceiling's);
* **cascade**: Kokoro speech, motion from the checkpoint's audio-driven mode.

Speech is judged by Whisper tiny.en (WER on normalised words, :mod:`avatar_core.eval.judge`), lips by
bilabial closure F1 against each system's own phone timing (Kokoro's for teacher and cascade, the
model's predicted durations for joint), motion by beat alignment, Fréchet distance of expression
vectors against the teacher, and diversity; voice by mel-cepstral distortion against the teacher's
WORLD analysis (DTW-aligned). Speed: RTF of each system and the joint model's first-chunk latency (the
first chunk the Engine would synthesize).

With several voices each gets its own report in ``out/<voice>/`` and ``out/report.md`` puts the
voices side by side (the WER of every system, the joint model's lips and speed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from avatar_core.config import AppSettings, BehaviourConfig
from avatar_core.eval.judge import Transcribe, spoken_wer, transcriber
from avatar_core.eval.metrics import (
    beat_align_scores,
    bilabial_intervals,
    diversity,
    expression_vectors,
    frechet_distance,
    lip_closure_f1,
    mel_cepstral_distortion,
    pooled_closure_f1,
)
from avatar_core.eval.report import write_report
from avatar_core.model.config import EULER_STEPS
from avatar_core.motion import INDEX, FloatArray
from avatar_core.speech import features
from avatar_core.speech.features import MODEL_FPS, SAMPLE_RATE, SPECTRAL
from avatar_core.teacher.speaking import Phone

if TYPE_CHECKING:
    from avatar_core.model.inference import JointModel

log = logging.getLogger(__name__)

SYSTEMS = ("teacher", "ceiling", "joint", "cascade")
SPEECH_ONLY = ("ceiling",)  # systems without motion of their own
TARGETS: dict[str, tuple[str, float]] = {
    "wer": ("<=", 0.10),
    "gap_to_teacher": ("<=", 0.02),  # the ceiling: what the representation costs
    "gap_to_ceiling": ("<=", 0.04),  # the joint model: what the model costs on top
    "lip_closure_f1": (">=", 0.95),
    "joint_rtf": ("<=", 0.05),
    "speedup_vs_kokoro": (">=", 10.0),
    "first_chunk_ms": ("<=", 150.0),
}


@dataclass
class Clip:
    """One system's output for one sentence."""

    audio: npt.NDArray[np.float32]  # (S,) 24 kHz
    motion: FloatArray  # (T, D) at 40 fps
    phones: list[Phone]
    seconds: float  # wall time to make it


@dataclass
class SystemResult:
    """Per-clip outputs and transcripts of one system."""

    clips: list[Clip] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)


def evaluate(
    sentences: Sequence[str],
    out: Path,
    checkpoint: Path | None,
    cache_dir: Path,
    steps: int = EULER_STEPS,
    voices: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    details: dict[str, object] | None = None,
    vocoder: str = "neural",
) -> dict[str, dict[str, dict[str, float]]]:
    """Run the four systems on ``sentences`` in each of ``voices`` (default: the checkpoint's) and write
    the reports into ``out``; returns voice -> system -> metric."""
    from avatar_core.model.checkpoint import check_speaker
    from avatar_core.model.inference import JointModel
    from avatar_core.vocoder.infer import VOCODERS

    if not sentences:
        raise ValueError("no held-out sentences to evaluate")
    if vocoder not in VOCODERS:
        raise ValueError(f"unknown vocoder {vocoder!r}; use one of {', '.join(VOCODERS)}")
    # torch's oneDNN as a live process sets it, so the speed figures are the product's
    onednn = AppSettings().torch_onednn
    model = JointModel(checkpoint, steps=steps, vocoder=vocoder, onednn=onednn)
    chosen = tuple(voices or model.voices)
    for voice in chosen:
        check_speaker(voice, model.voices, model.path)
    transcribe = transcriber()
    total = len(sentences) * len(chosen)
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for k, voice in enumerate(chosen):
        folder = out if len(chosen) == 1 else out / voice
        folder.mkdir(parents=True, exist_ok=True)

        def step(done: int, _: int, offset: int = k * len(sentences)) -> None:
            if progress:
                progress(offset + done, total)

        tables[voice] = _evaluate_voice(
            sentences, folder, model, voice, cache_dir, transcribe, step, dict(details or {}), steps
        )
    if len(chosen) > 1:
        summary = {
            voice: {
                **{f"{name}_wer": table[name]["wer"] for name in SYSTEMS},
                "ceiling_gap": table["ceiling"]["wer"] - table["teacher"]["wer"],
                "joint_gap_to_ceiling": table["joint"]["wer"] - table["ceiling"]["wer"],
                "joint_lip_closure_f1": table["joint"]["lip_closure_f1"],
                "joint_rtf": table["joint"]["rtf"],
                "first_chunk_ms": table["joint"]["first_chunk_ms"],
            }
            for voice, table in tables.items()
        }
        write_report(
            summary,
            VOICE_TARGETS,
            out,
            details={"sentences": len(sentences), "voices": list(chosen), **(details or {})},
            title="dyad joint model: held-out evaluation per voice",
        )
    return tables


# Targets of the per-voice summary (voices are its columns).
VOICE_TARGETS: dict[str, tuple[str, float]] = {
    "joint_wer": ("<=", 0.15),
    "ceiling_gap": ("<=", 0.02),
    "joint_gap_to_ceiling": ("<=", 0.04),
    "joint_lip_closure_f1": (">=", 0.95),
    "joint_rtf": ("<=", 0.05),
    "first_chunk_ms": ("<=", 150.0),
}


def _evaluate_voice(
    sentences: Sequence[str],
    out: Path,
    model: JointModel,
    speaker: str,
    cache_dir: Path,
    transcribe: Transcribe,
    progress: Callable[[int, int], None],
    details: dict[str, object],
    steps: int,
) -> dict[str, dict[str, float]]:
    """The four systems in one voice; writes that voice's report into ``out``."""
    from avatar_core.speech.prosody import prosody_from_audio
    from avatar_core.teacher.speaking import speak
    from avatar_core.text.chunking import streamed_first_chunk
    from avatar_core.tts.kokoro import KokoroTTS

    tts = KokoroTTS(cache_dir)
    behaviour = BehaviourConfig()
    results = {name: SystemResult() for name in SYSTEMS}
    first_chunk: list[float] = []
    kokoro_s = kokoro_audio_s = 0.0
    mcd: list[float] = []
    model.generate("Hello.", speaker)  # warm-up: first-call allocations are not the model's speed
    for i, text in enumerate(sentences):
        start = time.perf_counter()
        timed = tts.synthesize_timed(text, speaker).trim_lead()
        k_s = time.perf_counter() - start
        kokoro_s += k_s
        kokoro_audio_s += timed.duration_s
        frames = features.frames_for(timed.audio.size)
        prosody = prosody_from_audio(timed.audio, SAMPLE_RATE, MODEL_FPS)
        teacher_motion = speak(timed.phones, prosody, MODEL_FPS, behaviour, seed=i, frames=frames)
        results["teacher"].clips.append(Clip(timed.audio, teacher_motion, timed.phones, k_s))

        start = time.perf_counter()
        reference = features.analyze(timed.audio)  # (T, F) WORLD's, also the MCD's reference below
        analysed = reference if model.vocoder.layout == "world" else model.analyze(timed.audio)
        ceiling = model.vocoder.synthesize(analysed)[: timed.audio.size]
        results["ceiling"].clips.append(
            Clip(ceiling, teacher_motion, timed.phones, time.perf_counter() - start)
        )

        start = time.perf_counter()
        driven = model.drive(timed.audio)
        results["cascade"].clips.append(
            Clip(timed.audio, driven, timed.phones, k_s + time.perf_counter() - start)
        )

        start = time.perf_counter()
        joint = model.generate(text, speaker)
        results["joint"].clips.append(
            Clip(joint.audio, joint.motion, joint.phones, time.perf_counter() - start)
        )
        start = time.perf_counter()
        model.generate(streamed_first_chunk(text), speaker)  # a reply's first chunk, streamed from the LLM
        first_chunk.append((time.perf_counter() - start) * 1000)

        # of the audio (WORLD's envelope of both), so models predicting any features compare alike
        spoken = features.analyze(joint.audio)[:, SPECTRAL]
        mcd.append(mel_cepstral_distortion(reference[:, SPECTRAL], spoken))
        for name in SYSTEMS:
            results[name].transcripts.append(transcribe(results[name].clips[-1].audio))
        progress(i + 1, len(sentences))

    table: dict[str, dict[str, float]] = {}
    per_clip: dict[str, dict[str, list[float]]] = {"lip_closure_f1": {}, "wer": {}}
    teacher_expr = np.concatenate([expression_vectors(c.motion) for c in results["teacher"].clips])
    for name in SYSTEMS:
        r = results[name]
        wer = spoken_wer(sentences, r.transcripts)
        per_clip["wer"][name] = [spoken_wer([s], [t]) for s, t in zip(sentences, r.transcripts, strict=True)]
        speech_s = sum(c.audio.size for c in r.clips) / SAMPLE_RATE
        rtf = sum(c.seconds for c in r.clips) / speech_s
        if name in SPEECH_ONLY:
            table[name] = {"wer": wer, "rtf": rtf}
            continue
        closures = [
            lip_closure_f1(c.motion[:, INDEX["lips_pressed"]], MODEL_FPS, bilabial_intervals(c.phones))
            for c in r.clips
        ]
        beats = [beat_align_scores(c.motion, MODEL_FPS, c.audio, SAMPLE_RATE) for c in r.clips]
        expr = np.concatenate([expression_vectors(c.motion) for c in r.clips])
        table[name] = {
            "wer": wer,
            "lip_closure_f1": pooled_closure_f1(closures)["f1"],
            "beat_align_head": float(np.nanmean([b["head"] for b in beats])),
            "beat_align_face": float(np.nanmean([b["face"] for b in beats])),
            "frechet_expression": frechet_distance(teacher_expr, expr),
            "diversity": diversity([c.motion for c in r.clips]) if len(r.clips) > 1 else float("nan"),
            "rtf": rtf,
        }
        per_clip["lip_closure_f1"][name] = [c["f1"] for c in closures]
    kokoro_rtf = kokoro_s / kokoro_audio_s
    table["joint"]["joint_rtf"] = table["joint"]["rtf"]
    table["joint"]["speedup_vs_kokoro"] = kokoro_rtf / table["joint"]["rtf"]
    table["joint"]["first_chunk_ms"] = float(np.median(first_chunk))
    table["joint"]["first_chunk_ms_p95"] = float(np.percentile(first_chunk, 95))
    table["joint"]["mcd_db"] = float(np.mean(mcd))
    table["teacher"]["kokoro_rtf"] = kokoro_rtf
    table["ceiling"]["gap_to_teacher"] = table["ceiling"]["wer"] - table["teacher"]["wer"]
    table["joint"]["gap_to_ceiling"] = table["joint"]["wer"] - table["ceiling"]["wer"]
    checkpoint_info: dict[str, object] = {
        k: v for k, v in model.info.items() if k in ("step", "data", "wall_s", "hardware")
    }
    data = checkpoint_info.get("data")
    if isinstance(data, dict):  # older checkpoints hold the data folder's full path
        checkpoint_info["data"] = {**data, "folder": Path(str(data.get("folder", ""))).name}
    info = {
        "sentences": len(sentences),
        "voice": speaker,
        "euler_steps": steps,
        "checkpoint": model.path.name,  # a report names files, not this machine's folders
        "checkpoint_info": checkpoint_info,
        "examples": {
            name: [
                {"text": s, "heard": t}
                for s, t in zip(sentences[:5], results[name].transcripts[:5], strict=False)
            ]
            for name in SYSTEMS
        },
        **details,
    }
    write_report(
        table, TARGETS, out, details=info, per_clip=per_clip, title="dyad joint model: held-out evaluation"
    )
    _write_samples(out, results)
    return table


def _write_samples(out: Path, results: dict[str, SystemResult]) -> None:
    """The first clip of each system as a WAV, to listen to."""
    import wave

    for name, r in results.items():
        if not r.clips:
            continue
        pcm = (np.clip(r.clips[0].audio, -1, 1) * 32767).astype(np.int16)
        with wave.open(str(out / f"sample_{name}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(SAMPLE_RATE)
            f.writeframes(pcm.tobytes())
