"""Cascade mode: Kokoro speaks the text, the procedural teacher animates the face from its exact timing.

An :class:`Utterance` is what every voice gives the Engine: int16 audio, the speech-layer motion at the
video frame rate aligned to the audio's first sample, and timing to map played time back to words.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from avatar_core.config import BehaviourConfig, VoiceConfig
from avatar_core.frames import AUDIO_RATE, to_int16
from avatar_core.motion import FloatArray, resample
from avatar_core.speech.features import MODEL_FPS
from avatar_core.speech.prosody import prosody_from_audio
from avatar_core.speech.world import shift_pitch
from avatar_core.teacher.speaking import Phone, speech_layer
from avatar_core.teacher.visemes import viseme_class


@dataclass(frozen=True)
class Utterance:
    """One synthesized chunk of speech with its face motion."""

    text: str
    audio: npt.NDArray[np.int16]  # (S,) 24 kHz mono
    motion: FloatArray  # (T, D) speech layer at ``fps``, frame k at k / fps after the first sample
    fps: float
    phones: list[Phone]
    phrase_ends: list[float]  # seconds into the audio
    complete: bool = False  # motion already holds blinks and idle motion (joint model, audio-driven)

    @property
    def duration_s(self) -> float:
        """Audio length in seconds."""
        return self.audio.size / AUDIO_RATE

    def text_spoken_by(self, seconds: float) -> str:
        """The words fully spoken ``seconds`` into the audio (proportional to the phones spoken)."""
        speech = [p for p in self.phones if viseme_class(p.symbol) not in (None, "rest")]
        if not speech or seconds >= self.duration_s:
            return self.text if seconds >= self.duration_s or not speech else ""
        done = sum(1 for p in speech if p.end <= seconds) / len(speech)
        cut = int(done * len(self.text))
        if cut >= len(self.text):
            return self.text
        # Only whole words: back up to the last space before the cut.
        space = self.text.rfind(" ", 0, cut + 1)
        return self.text[:space].rstrip() if space > 0 else ""


class AudioDriver(Protocol):
    """Audio-driven motion: 24 kHz speech (S,) -> complete motion at 40 fps (the joint model's mode)."""

    def drive(self, audio: npt.NDArray[np.float32]) -> FloatArray: ...


class CascadeVoice:
    """Kokoro-82M speech; face motion from the audio by ``driver`` (the joint model's audio-driven mode)
    or, without one, from Kokoro's exact phoneme timing by the procedural teacher.

    ``utterance`` is blocking: run it in a worker thread.
    """

    def __init__(
        self,
        voice: VoiceConfig,
        behaviour: BehaviourConfig,
        fps: float,
        cache_dir: Path,
        driver: AudioDriver | None = None,
    ) -> None:
        from avatar_core.tts.kokoro import KokoroTTS

        self.voice = voice
        self.behaviour = behaviour
        self.fps = fps
        self.tts = KokoroTTS(cache_dir)
        self.driver = driver
        self._count = 0
        self._lock = threading.Lock()

    def utterance(self, text: str) -> Utterance:
        """Speak ``text``: audio, speech-layer motion and timing."""
        speech = self.tts.synthesize_timed(text, self.voice.speaker, self.voice.rate).trim_lead()
        audio = shift_pitch(speech.audio, AUDIO_RATE, self.voice.pitch_semitones)
        frames = max(1, int(np.ceil(speech.duration_s * self.fps)))
        if self.driver is not None:
            motion = resample(self.driver.drive(audio), MODEL_FPS, self.fps, frames)
            return Utterance(text, to_int16(audio), motion, self.fps, speech.phones, [], complete=True)
        prosody = prosody_from_audio(audio, AUDIO_RATE, self.fps)
        with self._lock:  # a distinct, reproducible random stream per utterance
            self._count += 1
            rng = np.random.default_rng(self._count)
        motion, phrase_ends = speech_layer(speech.phones, prosody, self.fps, frames, self.behaviour, rng)
        return Utterance(text, to_int16(audio), motion, self.fps, speech.phones, phrase_ends)
