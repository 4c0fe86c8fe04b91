"""What a voice gives the Engine: the :class:`Utterance`, and the protocols the Engine speaks through.

A voice turns a chunk of text into an Utterance: int16 audio, the face motion at the video frame rate
aligned to the audio's first sample, and the timing that maps played time back to words. Cascade mode
(:mod:`avatar_core.cascade`: Kokoro speech, teacher motion) and joint mode (:mod:`avatar_core.joint`:
the AV-Flow model) both implement :class:`Voice`; the joint model's audio-driven mode is an
:class:`AudioDriver`.

Letters in shape comments: S audio samples at 24 kHz, T video frames, D = MOTION_DIM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from avatar_core.frames import AUDIO_RATE
from avatar_core.motion import FloatArray
from avatar_core.teacher.speaking import Phone
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


class Voice(Protocol):
    """Text -> :class:`Utterance` (blocking). Cascade mode: Kokoro + teacher; joint mode: AV-Flow."""

    fps: float

    def utterance(self, text: str) -> Utterance:
        """Synthesize one chunk of speech with its face motion."""
        ...


class AudioDriver(Protocol):
    """Audio-driven motion: 24 kHz speech (S,) -> complete motion at 40 fps (the joint model's mode)."""

    def drive(self, audio: npt.NDArray[np.float32]) -> FloatArray: ...
