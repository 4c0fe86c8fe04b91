"""The teacher dataset: Kokoro-82M speaks the corpus, the procedural teacher moves the face.

Each job is one sample (see :mod:`avatar_core.data.samples`):

* **speak**: the actor (voice ``voices[k]``) says a training sentence. Phoneme timing is exact: Kokoro's
  own duration predictor output (``/encoder/Round_output_0``, one value per input token in 25 ms frames,
  which is the model frame), so tokens and durations need no aligner. Speech features are WORLD
  parameters of Kokoro's audio; motion is the teacher's :func:`~avatar_core.teacher.speaking.speak` on the
  same frames; the partner listens silently with a simulated face.
* **listen** (dyadic): a partner (another voice) says two sentences with a pause between them; the actor
  is silent and moves with the teacher's listening behaviour (backchannel nods after low-pitch pauses,
  smile mirroring, gaze). The partner's conditioning comes from the very feature extractor the live agent
  runs on a user's audio (:class:`avatar_core.listening_features.ListeningFeatures`), plus a simulated face.

Jobs are numbered and deterministic (the sentence, voice and seed follow from the number), so a run
that stops can resume: finished ``.npz`` files are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from avatar_core.config import BehaviourConfig
from avatar_core.data.samples import MANIFEST, Role, Sample, append_manifest, load_sample, sample_paths
from avatar_core.frames import to_int16
from avatar_core.partner import PartnerFrame, partner_vector
from avatar_core.speech import features
from avatar_core.speech.features import HOP, MODEL_FPS, SAMPLE_RATE

if TYPE_CHECKING:
    from avatar_core.tts.kokoro import TimedSpeech

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
LISTEN_EVERY = 5  # one job in five is a listening sample: numbers 1, 6, 11, ...
DEFAULT_VOICES = ("jf_alpha",)
DEFAULT_PARTNER_VOICES = ("jm_kumo", "jf_nezumi", "jf_gongitsune")


@dataclass(frozen=True)
class Job:
    """What sample number ``index`` holds."""

    index: int
    role: Role
    texts: tuple[str, ...]  # one sentence (speak) or the partner's two (listen)
    voice: str  # the speaker of ``texts``
    seed: int

    @property
    def name(self) -> str:
        """File stem of the sample."""
        return f"{self.index:06d}"


def phoneme_timing(timed: TimedSpeech) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Kokoro's speech -> the joint model's phoneme tokens (N,) and their durations (N,) in model frames
    (Kokoro's own duration output, which is the model frame, so no aligner), summing to the whole frames
    of its audio."""
    from avatar_core.text.frontend import encode

    frames = timed.audio.size // HOP
    tokens = np.array([0, *encode(timed.ipa), 0], np.int64)  # Kokoro pads both ends
    durations = np.array([round((p.end - p.start) * MODEL_FPS) for p in timed.phones], np.int64)
    durations[-1] += frames - int(durations.sum())  # exact already; guards rounding
    return tokens, durations


def plan(
    sentences: Sequence[str], index: int, voices: Sequence[str], partner_voices: Sequence[str], seed: int = 0
) -> Job:
    """The job with number ``index``: a fixed function of the corpus, the voices and the seed."""
    if not sentences:
        raise ValueError("the corpus has no sentences")
    n = len(sentences)
    order = np.random.default_rng(seed).permutation(n)
    job_seed = seed * 1_000_003 + index
    if index % LISTEN_EVERY == 1:
        first, second = sentences[order[(index * 7 + 1) % n]], sentences[order[(index * 13 + 3) % n]]
        voice = partner_voices[(index // LISTEN_EVERY) % len(partner_voices)]
        return Job(index, "listen", (first, second), voice, job_seed)
    speaking = index - (index + LISTEN_EVERY - 2) // LISTEN_EVERY  # speak jobs before this one
    return Job(index, "speak", (sentences[order[speaking % n]],), voices[speaking % len(voices)], job_seed)


# -------------------------------------------------------------------------------------------------
# The simulated partner
# -------------------------------------------------------------------------------------------------


def _episodes(
    frames: int, rate_hz: float, length_s: tuple[float, float], rng: np.random.Generator
) -> FloatArray:
    """Smooth 0..1 bumps at random times (a Poisson process at ``rate_hz``)."""
    out = np.zeros(frames, np.float32)
    t = rng.exponential(1.0 / rate_hz)
    duration = frames / MODEL_FPS
    while t < duration:
        length = rng.uniform(*length_s)
        k = np.arange(frames) / MODEL_FPS
        u = np.clip((k - t) / length, 0.0, 1.0)
        out = np.maximum(out, (np.sin(np.pi * u) ** 2 * rng.uniform(0.4, 1.0)).astype(np.float32))
        t += length + rng.exponential(1.0 / rate_hz)
    return out


def simulated_face(
    speaking: npt.NDArray[np.bool_], energy: FloatArray, rng: np.random.Generator
) -> tuple[bool, FloatArray]:
    """The partner's face per model frame: visible?, and (T, 4) smile, mouth_open, nod, brow_raise."""
    frames = speaking.size
    visible = bool(rng.random() > 0.1)  # some users have no camera
    face = np.zeros((frames, 4), np.float32)
    if not visible:
        return False, face
    listening = not speaking.any()
    face[:, 0] = _episodes(frames, 0.12 if listening else 0.08, (1.0, 3.0), rng) * rng.uniform(0.5, 1.0)
    loud = np.clip(np.sqrt(energy / 0.05), 0.0, 1.0)
    face[:, 1] = np.where(speaking, loud * rng.uniform(0.5, 0.9), 0.0) + rng.normal(0, 0.02, frames)
    face[:, 2] = _episodes(frames, 0.25 if listening else 0.1, (0.3, 0.6), rng)
    face[:, 3] = _episodes(frames, 0.1, (0.3, 0.8), rng) * 0.7
    return True, np.clip(face, 0.0, 1.0)


def partner_frames(
    audio: FloatArray | None, frames: int, rng: np.random.Generator, extractor: Any
) -> list[PartnerFrame]:
    """PartnerFrame per model frame for the partner's 24 kHz ``audio`` (``None``: the partner is silent).

    ``extractor`` is a fresh :class:`avatar_core.listening_features.ListeningFeatures`; a frame is read at
    the end of its 25 ms, as the live agent would see it.
    """
    from scipy.signal import resample_poly

    speaking = np.zeros(frames, bool)
    energy = np.zeros(frames, np.float32)
    out: list[PartnerFrame] = []
    if audio is not None:
        wave = resample_poly(audio, 2, 3).astype(np.float32)  # 24 -> 16 kHz
        hop16 = HOP * 2 // 3  # 400 samples per model frame
        wave = np.pad(wave, (0, max(0, frames * hop16 - wave.size)))
        rms = np.sqrt(np.convolve(wave**2, np.ones(hop16) / hop16, mode="same"))
        active = rms > 0.01
        # The VAD's decision: speech from the first to the last active stretch, with a 0.2 s hangover.
        hang = int(0.2 * 16_000)
        kernel = np.ones(hang)
        held = np.convolve(active.astype(float), kernel, mode="full")[: wave.size] > 0
        for j in range(frames):
            chunk = wave[j * hop16 : (j + 1) * hop16]
            speaking[j] = bool(held[min(wave.size - 1, (j + 1) * hop16 - 1)])
            extractor.push_audio(chunk, j / MODEL_FPS, speaking[j])
            frame = extractor.frame((j + 1) / MODEL_FPS)
            energy[j] = frame.energy
            out.append(frame)
    else:
        out = [PartnerFrame(t=(j + 1) / MODEL_FPS) for j in range(frames)]
    visible, face = simulated_face(speaking, energy, rng)
    return [
        dataclasses.replace(
            f,
            face_visible=visible,
            smile=float(face[j, 0]),
            mouth_open=float(face[j, 1]),
            nod=float(face[j, 2]),
            brow_raise=float(face[j, 3]),
        )
        for j, f in enumerate(out)
    ]


def partner_matrix(frames: Sequence[PartnerFrame | None]) -> FloatArray:
    """(T, P) conditioning vectors."""
    return np.array([partner_vector(f) for f in frames], np.float32).reshape(len(frames), -1)


# -------------------------------------------------------------------------------------------------
# Making samples
# -------------------------------------------------------------------------------------------------


class TeacherWorker:
    """Kokoro + WORLD + teacher in one process (one ONNX thread: run one worker per core)."""

    def __init__(self, cache_dir: Path) -> None:
        from avatar_core.listening_features import ListeningFeatures
        from avatar_core.tts.kokoro import KokoroTTS

        self.tts = KokoroTTS(cache_dir, threads=1)
        self._features = ListeningFeatures
        self.behaviour = BehaviourConfig()

    def make(self, job: Job) -> Sample:
        """The sample of ``job``."""
        from avatar_core.speech.prosody import prosody_from_audio
        from avatar_core.teacher.listening import listen
        from avatar_core.teacher.speaking import speak

        rng = np.random.default_rng(job.seed)
        if job.role == "speak":
            timed = self.tts.synthesize_timed(job.texts[0], job.voice)
            if timed.audio.size == 0:
                raise ValueError(f"Kokoro said nothing for {job.texts[0]!r}")
            tokens, durations = phoneme_timing(timed)
            frames = int(durations.sum())
            audio = timed.audio[: frames * HOP]
            prosody = prosody_from_audio(audio, SAMPLE_RATE, MODEL_FPS)
            motion = speak(timed.phones, prosody, MODEL_FPS, self.behaviour, seed=job.seed, frames=frames)
            partner = partner_frames(None, frames, rng, None)
            return Sample(
                job.name, job.texts[0], job.voice, "speak", "teacher", tokens, durations,
                features.analyze(audio), motion, partner_matrix(partner), to_int16(audio),
            )  # fmt: skip
        # listen: the partner speaks two sentences, the actor listens
        first = self.tts.synthesize_timed(job.texts[0], job.voice).audio
        second = self.tts.synthesize_timed(job.texts[1], job.voice).audio
        pause = np.zeros(int(rng.uniform(0.3, 1.2) * SAMPLE_RATE), np.float32)
        lead = np.zeros(int(rng.uniform(0.2, 0.8) * SAMPLE_RATE), np.float32)
        tail = np.zeros(int(rng.uniform(0.8, 1.6) * SAMPLE_RATE), np.float32)
        audio = np.concatenate([lead, first, pause, second, tail])
        frames = audio.size // HOP
        audio = audio[: frames * HOP]
        partner = partner_frames(audio, frames, rng, self._features())
        motion = listen(partner, MODEL_FPS, self.behaviour, seed=job.seed)
        return Sample(
            job.name, " ".join(job.texts), job.voice, "listen", "teacher",
            np.zeros(1, np.int64), np.array([frames], np.int64),
            features.silence(frames), motion, partner_matrix(partner), to_int16(audio),
        )  # fmt: skip


_worker: TeacherWorker | None = None


def _init(cache_dir: Path) -> None:
    global _worker
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker = TeacherWorker(cache_dir)


def _run(job: Job, out: Path) -> dict[str, object]:
    assert _worker is not None
    sample = _worker.make(job)
    sample.save(out)
    return sample.meta()


# -------------------------------------------------------------------------------------------------
# The dataset
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """What ``dyad train data`` was asked for; stored in ``spec.json`` so a resume uses the same plan."""

    corpus_version: str
    voices: tuple[str, ...] = DEFAULT_VOICES
    partner_voices: tuple[str, ...] = DEFAULT_PARTNER_VOICES
    seed: int = 0


def _read_progress(out: Path) -> tuple[set[str], int]:
    """Names already finished and their total frames (from the manifest; samples missing from it are read)."""
    done = {p.stem for p in sample_paths(out)}
    frames: dict[str, int] = {}
    manifest = out / MANIFEST
    if manifest.exists():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            try:
                meta = json.loads(line)
                frames[str(meta["name"])] = int(meta["frames"])
            except (ValueError, KeyError):
                continue  # a line cut short by a crash; the npz is the truth
    for name in done - frames.keys():
        sample = load_sample(out / f"{name}.npz")
        append_manifest(out, sample.meta())
        frames[name] = sample.frames
    return done, sum(frames[n] for n in done)


def generate(
    out: Path,
    hours: float,
    sentences: Sequence[str],
    spec: DataSpec,
    cache_dir: Path,
    workers: int = 1,
    progress: Callable[[float, float], None] | None = None,
) -> int:
    """Write samples into ``out`` until it holds ``hours`` of audio; returns the number of samples.

    Resumable: finished samples are kept; a folder made for a different corpus or voices is refused.
    ``progress(done_hours, hours)`` is called after every sample.
    """
    if not hours > 0:
        raise ValueError(f"--hours must be > 0, got {hours}")
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "spec.json"
    wanted = dataclasses.asdict(spec)
    wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in wanted.items()}
    if spec_file.exists():
        existing = json.loads(spec_file.read_text())
        if existing != wanted:
            raise ValueError(
                f"{out} holds a dataset made with {existing}, not {wanted}; "
                "use another --out folder or the same options to resume"
            )
    else:
        spec_file.write_text(json.dumps(wanted, indent=1) + "\n")
    done, frames = _read_progress(out)
    target = hours * 3600 * MODEL_FPS
    if progress:
        progress(frames / MODEL_FPS / 3600, hours)
    index = 0
    ctx = get_context("spawn")
    pool = (
        ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(cache_dir,))
        if workers > 1
        else None
    )
    if pool is None:
        _init(cache_dir)
    try:
        while frames < target:
            batch: list[Job] = []
            while len(batch) < max(1, workers * 2):
                job = plan(sentences, index, spec.voices, spec.partner_voices, spec.seed)
                index += 1
                if job.name not in done:
                    batch.append(job)
            if pool is None:
                metas = [_run(job, out) for job in batch]
            else:
                metas = list(pool.map(_run, batch, [out] * len(batch)))
            for meta in metas:
                append_manifest(out, meta)
                done.add(str(meta["name"]))
                frames += int(str(meta["frames"]))
                if progress:
                    progress(frames / MODEL_FPS / 3600, hours)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    log.info("dataset %s: %d samples, %.2f h", out, len(done), frames / MODEL_FPS / 3600)
    return len(done)


def total_hours(out: Path) -> float:
    """Audio hours in a dataset folder."""
    return _read_progress(out)[1] / MODEL_FPS / 3600
