"""Running a trained joint model: text -> audio + motion, audio -> motion, partner -> listening motion.

All methods are blocking (torch, and pyworld for the WORLD vocoder): call them from a worker thread.
Results are deterministic for a given text and seed, so a streamed utterance equals the one-shot one.

Letters in shape comments: S samples at 24 kHz, T model frames (40 fps), F speech features, D motion
fields, P partner features.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from avatar_core.model.avflow import AVFlow
from avatar_core.model.checkpoint import ModelMissingError, check_speaker, checkpoint_path
from avatar_core.model.config import EULER_STEPS
from avatar_core.model.flow import euler
from avatar_core.motion import MOTION_DIM, FloatArray, clip
from avatar_core.partner import PARTNER_DIM, PartnerFrame, partner_vector
from avatar_core.speech import features
from avatar_core.speech.features import MODEL_FPS
from avatar_core.teacher.speaking import Phone
from avatar_core.vocoder.infer import SpeechVocoder, VocoderName, WorldVocoder, load_speech_vocoder
from avatar_core.workers import DeadlineLock

if TYPE_CHECKING:
    from avatar_core.config import AppSettings

__all__ = ["JointModel", "JointOutput", "ModelMissingError", "checkpoint_path", "silent_partner"]

LEAD_FRAMES = 2  # silence kept before the first phoneme (50 ms): more is pure latency
# The leading pad is generated as long as training saw it (Kokoro's own 11-21 frames) and then cut to
# LEAD_FRAMES: generated at 2 frames, a length training never saw, the first word came out garbled
# (model card, "The leading pad"; docs/design.md, "The joint model").
GENERATED_LEAD_FRAMES = 12
CUT_LEAD = GENERATED_LEAD_FRAMES - LEAD_FRAMES  # frames generated and dropped
TAIL_FRAMES = (3, 10)  # the closing pad's duration is kept in this range
# The speech flow's sampling temperature (docs/design.md, "The joint model"): chosen by measurement,
# see the model card's "Sampling temperature" table.
SPEECH_TEMPERATURE = 0.4


@dataclass(frozen=True)
class JointOutput:
    """One utterance from the joint model."""

    audio: npt.NDArray[np.float32]  # (S,) 24 kHz, S = T * 600
    motion: FloatArray  # (T, D) at 40 fps, complete (speech, blinks, idle motion)
    speech: FloatArray  # (T, F) the model's speech features (WORLD or log-mel, its config's ``speech``)
    phones: list[Phone]  # the phoneme timeline (pads have the symbol "")
    model_s: float  # seconds spent in the network
    vocoder_s: float  # seconds spent in the vocoder

    @property
    def duration_s(self) -> float:
        """Audio length in seconds."""
        return self.audio.size / features.SAMPLE_RATE


def silent_partner(frames: int) -> FloatArray:
    """(T, P) conditioning for 'nobody is speaking and no face is seen'."""
    return np.tile(np.array(partner_vector(PartnerFrame(t=0.0)), np.float32), (frames, 1))


class JointModel:
    """A loaded checkpoint. ``steps``: Euler steps (default :data:`EULER_STEPS`); ``vocoder``: what turns
    its speech features into audio, or the name of one (default: the bundled neural vocoder for the
    features it predicts); ``temperature``: the scale of the speech flow's source noise
    (:data:`SPEECH_TEMPERATURE`; 1 samples as trained)."""

    def __init__(
        self,
        checkpoint: Path | None = None,
        steps: int = EULER_STEPS,
        threads: int | None = None,
        seed: int = 0,
        vocoder: SpeechVocoder | VocoderName | None = None,
        temperature: float = SPEECH_TEMPERATURE,
        onednn: bool | None = None,
    ) -> None:
        """``threads`` and ``onednn`` (torch's oneDNN kernels on or off; None leaves them) are torch's
        process-wide settings, set here for every model of the process."""
        from avatar_core.model.train import load_model

        if temperature < 0:  # before the load: a bad argument costs nothing
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        path = checkpoint_path(checkpoint)
        if not path.exists():
            raise ModelMissingError(
                f"no joint-model checkpoint at {path}; "
                "train one with `dyad train fit` or use voice.mode: cascade"
            )
        if threads:
            torch.set_num_threads(threads)
        if onednn is not None:
            torch.backends.mkldnn.enabled = onednn  # type: ignore[assignment]  # a ContextProp to mypy
        self.path = path
        self.model: AVFlow
        self.model, self.info = load_model(path)
        self.steps = steps
        self.seed = seed
        self.temperature = temperature
        config = self.model.config
        if vocoder is None or isinstance(vocoder, str):
            vocoder = load_speech_vocoder(vocoder or "neural", inputs=config.speech)
        self.vocoder = vocoder
        self._check_vocoder()
        self._world = WorldVocoder()
        # One inference at a time per model, earliest deadline first (the caller's ``workers.due_in``):
        # a reply someone waits for before a later chunk or a listening block made ahead.
        self._lock = DeadlineLock()

    @classmethod
    def from_settings(cls, settings: AppSettings, **kwargs: int) -> JointModel:
        """The checkpoint, vocoder and torch settings the process settings name (``DYAD_MODEL``,
        ``DYAD_VOCODER``, ``DYAD_TORCH_THREADS``, ``DYAD_TORCH_ONEDNN``...)."""
        vocoder: SpeechVocoder | VocoderName = settings.vocoder
        if settings.vocoder_checkpoint is not None:
            vocoder = load_speech_vocoder(settings.vocoder, settings.vocoder_checkpoint)
        return cls(
            settings.model,
            vocoder=vocoder,
            onednn=settings.torch_onednn,
            **{"threads": settings.torch_threads, **kwargs},
        )

    def _check_vocoder(self) -> None:
        """Refuse a vocoder that reads other features than the model predicts, naming the fix."""
        config, vocoder = self.model.config, self.vocoder
        predicts = config.name(config.speech)
        if vocoder.layout != predicts:
            raise ValueError(
                f"{self.path} predicts {config.speech} features ({predicts}), but the vocoder reads"
                f" {vocoder.inputs} features ({vocoder.layout}); use a vocoder trained on the model's layout"
                " (DYAD_VOCODER_CHECKPOINT, or the bundled one for it)"
            )

    def vocoder_for(self, pitch_semitones: float) -> SpeechVocoder:
        """The vocoder that renders speech shifted by ``pitch_semitones``: pyworld when the chosen one does
        not follow a shifted F0 (a WORLD model's neural vocoder; see docs/design.md, "The joint model")."""
        if pitch_semitones == 0.0 or self.vocoder.follows_pitch:
            return self.vocoder
        return self._world

    @property
    def voices(self) -> tuple[str, ...]:
        """The speakers this checkpoint learned."""
        return self.model.config.voices

    def _generator(self, key: str) -> torch.Generator:
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))

    def tokens(self, text: str) -> list[int]:
        """Phoneme ids with the two pads, as in training."""
        from avatar_core.text.frontend import encode, phonemes

        return [0, *encode(phonemes(text)), 0]

    @torch.inference_mode()
    def generate(
        self,
        text: str,
        voice: str | None = None,
        partner: FloatArray | None = None,
        steps: int | None = None,
        pitch_semitones: float = 0.0,
        rate: float = 1.0,
    ) -> JointOutput:
        """Speech and motion for ``text`` (empty text -> empty output) in ``voice``.

        ``rate`` divides the predicted phoneme durations (0.8 -> 25% longer), so lips and speech stay
        together; ``pitch_semitones`` shifts the predicted speech's pitch before the vocoder
        (``SpeechLayout.shift_pitch``: WORLD's F0, or a mel model's bands).
        """
        from avatar_core.text.frontend import VOCAB

        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        voice = check_speaker(voice or self.voices[0], self.voices, self.path)
        ids = self.tokens(text)
        if len(ids) <= 2:
            empty = np.zeros((0, self.model.config.speech_dim), np.float32)
            return JointOutput(
                np.zeros(0, np.float32), np.zeros((0, MOTION_DIM), np.float32), empty, [], 0.0, 0.0
            )
        start = time.perf_counter()
        with self._lock.hold():
            m = self.model
            tokens = torch.tensor([ids])
            speaker = torch.tensor([self.voices.index(voice)])
            h, log_dur = m.encode_text(tokens, torch.ones_like(tokens, dtype=torch.bool), speaker)
            real = torch.expm1(log_dur).clamp(min=0) / rate  # (1, N) frames
            real[0, 0] = 0.0  # the leading pad gets GENERATED_LEAD_FRAMES below
            real[0, 1:-1] = torch.where(tokens[0, 1:-1] > 0, real[0, 1:-1], 0.0)
            durations = phone_frames(real)  # (1, N)
            durations[0, 0] = GENERATED_LEAD_FRAMES
            durations[0, -1] = durations[0, -1].clamp(*TAIL_FRAMES)
            if partner is not None:  # row k of the conditioning goes with the kth frame that is kept
                partner = np.concatenate([np.repeat(_fit(partner, 1), CUT_LEAD, axis=0), partner])
            speech_np, motion = self._sample(h, durations, speaker, partner, steps, text)
            if pitch_semitones:
                speech_np = m.config.shift_pitch(m.config.speech, speech_np, pitch_semitones)
        model_s = time.perf_counter() - start
        start = time.perf_counter()
        # Vocoded whole, so the first kept frame has its left context; then the extra lead is cut.
        audio = self.vocoder_for(pitch_semitones).synthesize(speech_np)[CUT_LEAD * features.HOP :]
        vocoder_s = time.perf_counter() - start
        speech_np, motion = speech_np[CUT_LEAD:], motion[CUT_LEAD:]
        durations[0, 0] = LEAD_FRAMES
        edges = np.concatenate([[0], np.cumsum(durations[0].numpy())]) / MODEL_FPS
        symbols = ["" if i == 0 else VOCAB[i] for i in ids]
        phones = [Phone(s, float(edges[k]), float(edges[k + 1])) for k, s in enumerate(symbols)]
        return JointOutput(audio, motion, speech_np, phones, model_s, vocoder_s)

    def _sample(
        self,
        h: torch.Tensor,
        durations: torch.Tensor,
        speaker: torch.Tensor,
        partner: FloatArray | None,
        steps: int | None,
        key: str,
    ) -> tuple[FloatArray, FloatArray]:
        """Encoded text h (1, N, C) held for ``durations`` (1, N) frames -> speech features (T, F) and
        motion (T, D); the caller holds the lock."""
        m = self.model
        frames = int(durations.sum())
        cond, mu_s, mu_m = m.condition(h, durations, frames, speaker, torch.ones(1, dtype=torch.bool))
        p = partner if partner is not None else silent_partner(frames)
        p_t = torch.from_numpy(_fit(p, frames))[None]
        xs, xm = euler(
            m, cond, mu_s, mu_m, p_t, steps or self.steps,
            generator=self._generator(key), temperature=self.temperature,
        )  # fmt: skip
        speech, channels = m.denormalize(xs, xm)
        return speech[0].numpy().copy(), clip(m.motion_frames(channels)[0].numpy())

    @torch.inference_mode()
    def speech_for(
        self, tokens: npt.NDArray[np.int64], durations: npt.NDArray[np.int64], voice: str, key: str
    ) -> FloatArray:
        """The speech features (T, F) the model predicts for phoneme ``tokens`` (N,) held for given
        ``durations`` (N,) frames (a teacher's), so they line up with that teacher's audio frame by frame:
        the vocoder's fine-tuning data (``dyad vocoder gta``)."""
        voice = check_speaker(voice, self.voices, self.path)
        with self._lock.hold():
            m = self.model
            ids = torch.from_numpy(np.asarray(tokens, np.int64))[None]  # (1, N)
            speaker = torch.tensor([self.voices.index(voice)])
            h, _ = m.encode_text(ids, torch.ones_like(ids, dtype=torch.bool), speaker)
            dur = torch.from_numpy(np.asarray(durations, np.int64))[None]  # (1, N)
            speech, _ = self._sample(h, dur, speaker, None, None, key)
        return speech

    def analyze(self, audio: npt.NDArray[np.float32]) -> FloatArray:
        """24 kHz speech (S,) -> the speech features this model predicts (T, F), as it was trained on."""
        config = self.model.config
        return config.analyze(config.speech, audio)

    @torch.inference_mode()
    def drive(self, audio: npt.NDArray[np.float32], partner: FloatArray | None = None) -> FloatArray:
        """Audio-driven mode: any 24 kHz speech (S,) -> complete motion (ceil(S / 600), D) at 40 fps."""
        speech = self.analyze(audio)  # (T, F)
        return self.drive_features(speech, partner, key=f"drive:{audio.size}")

    @torch.inference_mode()
    def drive_features(
        self, speech: FloatArray, partner: FloatArray | None = None, key: str = ""
    ) -> FloatArray:
        """Audio-driven mode from the model's speech features (T, F) -> motion (T, D)."""
        frames = speech.shape[0]
        with self._lock.hold():
            m = self.model
            speaker = torch.zeros(1, dtype=torch.long)
            h = torch.zeros(1, 1, m.config.d_model)
            cond, mu_s, mu_m = m.condition(
                h, torch.tensor([[frames]]), frames, speaker, torch.zeros(1, dtype=torch.bool)
            )
            xs, _ = m.normalize(torch.from_numpy(speech)[None], torch.zeros(1, frames, m.motion_channels))
            p = partner if partner is not None else silent_partner(frames)
            p_t = torch.from_numpy(_fit(p, frames))[None]
            _, xm = euler(m, cond, mu_s, mu_m, p_t, self.steps, speech=xs, generator=self._generator(key))
            _, channels = m.denormalize(xs, xm)
            return clip(m.motion_frames(channels)[0].numpy())

    @torch.inference_mode()
    def listen(self, partner: FloatArray, key: str = "") -> FloatArray:
        """Listening mode: the partner's conditioning (T, P) -> the actor's motion (T, D) while silent.

        ``key`` varies the sampling noise (the live Engine passes the block number)."""
        frames = partner.shape[0]
        with self._lock.hold():
            m = self.model
            speaker = torch.zeros(1, dtype=torch.long)
            h, _ = m.encode_text(
                torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.bool), speaker
            )
            cond, mu_s, mu_m = m.condition(
                h, torch.tensor([[frames]]), frames, speaker, torch.ones(1, dtype=torch.bool)
            )
            p_t = torch.from_numpy(_fit(partner, frames))[None]
            _, xm = euler(
                m, cond, mu_s, mu_m, p_t, self.steps, generator=self._generator(f"listen:{key}:{frames}")
            )
            _, channels = m.denormalize(mu_s, xm)
            return clip(m.motion_frames(channels)[0].numpy())


def phone_frames(durations: torch.Tensor) -> torch.Tensor:
    """Real-valued durations (B, N) in frames -> whole frames (B, N) with the same running total.

    Rounding each phone alone drifts (a rate of 0.8 turns 2 frames into 2.5 and back into 2); rounding
    the cumulative sum keeps every phone boundary within half a frame of its real-valued place."""
    edges = torch.round(torch.cumsum(durations, dim=-1))  # (B, N)
    return torch.diff(edges, dim=-1, prepend=torch.zeros_like(edges[..., :1])).long()


def _fit(partner: FloatArray, frames: int) -> FloatArray:
    """Partner conditioning padded (with its last row) or cut to ``frames`` rows."""
    p = np.asarray(partner, np.float32).reshape(-1, PARTNER_DIM)
    if p.shape[0] >= frames:
        return np.ascontiguousarray(p[:frames])
    pad = np.tile(p[-1:] if p.shape[0] else silent_partner(1), (frames - p.shape[0], 1))
    return np.concatenate([p, pad])
