"""``dyad train eval``: the teacher, dyad joint and dyad cascade side by side on held-out text, in one run.

* **teacher**: Kokoro-82M speech with the procedural teacher's motion from Kokoro's exact phone timing
  (what the model was trained to imitate);
* **joint**: the AV-Flow checkpoint, text -> speech features + motion, WORLD vocoder;
* **cascade**: Kokoro speech, motion from the checkpoint's audio-driven mode.

Speech is judged by Whisper tiny.en (WER on normalised words), lips by bilabial closure F1 against each
system's own phone timing (Kokoro's for teacher and cascade, the model's predicted durations for joint),
motion by beat alignment, Fréchet distance of expression vectors against the teacher, and diversity;
voice by mel-cepstral distortion against the teacher's WORLD analysis (DTW-aligned). Speed: RTF of each
system and the joint model's first-chunk latency (the first chunk the Engine would synthesize).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_core.config import BehaviourConfig
from avatar_core.eval.metrics import (
    beat_align_scores,
    bilabial_intervals,
    diversity,
    expression_vectors,
    frechet_distance,
    lip_closure_f1,
    mel_cepstral_distortion,
    normalize_text,
    pooled_closure_f1,
    word_error_rate,
)
from avatar_core.eval.report import write_report
from avatar_core.motion import INDEX, FloatArray
from avatar_core.speech import features
from avatar_core.speech.features import MODEL_FPS, SAMPLE_RATE, SPECTRAL
from avatar_core.teacher.speaking import Phone

log = logging.getLogger(__name__)

SYSTEMS = ("teacher", "joint", "cascade")
TARGETS: dict[str, tuple[str, float]] = {
    "wer": ("<=", 0.10),
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


def _transcriber() -> Callable[[npt.NDArray[np.float32]], str]:
    from faster_whisper import WhisperModel
    from scipy.signal import resample_poly

    from avatar_core import bundled

    model = WhisperModel(str(bundled.whisper_model_dir()), device="cpu", compute_type="int8", cpu_threads=2)

    def transcribe(audio: npt.NDArray[np.float32]) -> str:
        wave = resample_poly(audio, 2, 3).astype(np.float32)  # 24 -> 16 kHz
        segments, _ = model.transcribe(wave, language="en", beam_size=1, vad_filter=False)
        return " ".join(s.text.strip() for s in segments)

    return transcribe


def evaluate(
    sentences: Sequence[str],
    out: Path,
    checkpoint: Path | None,
    cache_dir: Path,
    steps: int = 8,
    voice: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    details: dict[str, object] | None = None,
) -> dict[str, dict[str, float]]:
    """Run the three systems on ``sentences`` and write the report into ``out``; returns the results."""
    from avatar_core.model.inference import JointModel
    from avatar_core.speech.prosody import prosody_from_audio
    from avatar_core.teacher.speaking import speak
    from avatar_core.text.chunking import SentenceChunker
    from avatar_core.text.normalize import normalize
    from avatar_core.tts.kokoro import KokoroTTS

    if not sentences:
        raise ValueError("no held-out sentences to evaluate")
    model = JointModel(checkpoint, steps=steps)
    speaker = voice or model.voices[0]
    tts = KokoroTTS(cache_dir)
    transcribe = _transcriber()
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
        driven = model.drive(timed.audio)
        results["cascade"].clips.append(
            Clip(timed.audio, driven, timed.phones, k_s + time.perf_counter() - start)
        )

        start = time.perf_counter()
        joint = model.generate(text, speaker)
        results["joint"].clips.append(
            Clip(joint.audio, joint.motion, joint.phones, time.perf_counter() - start)
        )
        chunker = SentenceChunker()
        pieces = chunker.push(text) + chunker.flush()
        start = time.perf_counter()
        model.generate(pieces[0] if pieces else text, speaker)
        first_chunk.append((time.perf_counter() - start) * 1000)

        reference = features.analyze(timed.audio)[:, SPECTRAL]
        mcd.append(mel_cepstral_distortion(reference, joint.speech[:, SPECTRAL]))
        for name in SYSTEMS:
            results[name].transcripts.append(transcribe(results[name].clips[-1].audio))
        if progress:
            progress(i + 1, len(sentences))

    references = [normalize_text(normalize(s)) for s in sentences]
    table: dict[str, dict[str, float]] = {}
    per_clip: dict[str, dict[str, list[float]]] = {"lip_closure_f1": {}, "wer": {}}
    teacher_expr = np.concatenate([expression_vectors(c.motion) for c in results["teacher"].clips])
    for name in SYSTEMS:
        r = results[name]
        hyps = [normalize_text(normalize(t)) for t in r.transcripts]
        closures = [
            lip_closure_f1(c.motion[:, INDEX["lips_pressed"]], MODEL_FPS, bilabial_intervals(c.phones))
            for c in r.clips
        ]
        beats = [beat_align_scores(c.motion, MODEL_FPS, c.audio, SAMPLE_RATE) for c in r.clips]
        speech_s = sum(c.audio.size for c in r.clips) / SAMPLE_RATE
        expr = np.concatenate([expression_vectors(c.motion) for c in r.clips])
        table[name] = {
            "wer": word_error_rate(references, hyps),
            "lip_closure_f1": pooled_closure_f1(closures)["f1"],
            "beat_align_head": float(np.nanmean([b["head"] for b in beats])),
            "beat_align_face": float(np.nanmean([b["face"] for b in beats])),
            "frechet_expression": frechet_distance(teacher_expr, expr),
            "diversity": diversity([c.motion for c in r.clips]) if len(r.clips) > 1 else float("nan"),
            "rtf": sum(c.seconds for c in r.clips) / speech_s,
        }
        per_clip["lip_closure_f1"][name] = [c["f1"] for c in closures]
        per_clip["wer"][name] = [
            word_error_rate([ref], [hyp]) for ref, hyp in zip(references, hyps, strict=True)
        ]
    kokoro_rtf = kokoro_s / kokoro_audio_s
    table["joint"]["joint_rtf"] = table["joint"]["rtf"]
    table["joint"]["speedup_vs_kokoro"] = kokoro_rtf / table["joint"]["rtf"]
    table["joint"]["first_chunk_ms"] = float(np.median(first_chunk))
    table["joint"]["first_chunk_ms_p95"] = float(np.percentile(first_chunk, 95))
    table["joint"]["mcd_db"] = float(np.mean(mcd))
    table["teacher"]["kokoro_rtf"] = kokoro_rtf
    info = {
        "sentences": len(sentences),
        "voice": speaker,
        "euler_steps": steps,
        "checkpoint": str(model.path),
        "checkpoint_info": {
            k: v for k, v in model.info.items() if k in ("step", "data", "wall_s", "hardware")
        },
        "examples": {
            name: [
                {"text": s, "heard": t}
                for s, t in zip(sentences[:5], results[name].transcripts[:5], strict=False)
            ]
            for name in SYSTEMS
        },
        **(details or {}),
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
