"""Which speech features a network reads or predicts, in one definition for the joint model and the vocoder.

``world``: WORLD parameters (``features.py``, 45 per 25 ms frame, synthesised by ``pyworld`` or a trained
vocoder). ``mel``: log-mel frames (``mel.py``, ``mel_bands`` x ``mel_subframes`` per frame, synthesised by a
vocoder trained on them). :class:`SpeechLayout` holds the mel fields that both configs share and turns
audio into either kind of features (docs/design.md, "The joint model").

Letters in shape comments: S samples at 24 kHz, T feature frames (40 fps), F feature columns.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from avatar_core.config import StrictModel
from avatar_core.speech import features as world
from avatar_core.speech.mel import MelOptions, log_mel, shift_bands

Representation = Literal["world", "mel"]
FloatArray = npt.NDArray[np.float32]


class SpeechLayout(StrictModel):
    """The log-mel layout of ``mel`` features (unused by ``world`` ones)."""

    mel_bands: int = Field(80, ge=8, description="mel features: bands per mel frame")
    mel_subframes: int = Field(1, ge=1, description="mel features: mel frames per 25 ms feature frame")
    mel_n_fft: int = Field(1200, ge=64, description="mel features: analysis window in samples")

    def name(self, kind: Representation) -> str:
        """The layout of ``kind`` features as a dataset sample records it: ``world``, or for log-mel
        frames ``mel<bands>x<subframes>/<n_fft>`` (``mel80x1/1200``); :func:`parse_layout` reads it back."""
        if kind == "world":
            return "world"
        return f"mel{self.mel_bands}x{self.mel_subframes}/{self.mel_n_fft}"

    def mel_options(self) -> MelOptions:
        """The log-mel layout (raises ValueError naming the field when it cannot be used)."""
        return MelOptions(self.mel_bands, self.mel_subframes, self.mel_n_fft)

    def width(self, kind: Representation) -> int:
        """Columns of one frame of ``kind`` features."""
        return self.mel_options().feature_dim if kind == "mel" else world.FEATURE_DIM

    def analyze(self, kind: Representation, audio: npt.NDArray[np.floating]) -> FloatArray:
        """24 kHz speech (S,) -> ``kind`` features (T, F), T = ``features.frames_for(S)``."""
        if kind == "mel":
            return log_mel(audio, self.mel_options())
        return world.analyze(np.asarray(audio, np.float32))

    def silence(self, kind: Representation, frames: int) -> FloatArray:
        """``kind`` features (T, F) of ``frames`` frames of silence: what the actor says while listening."""
        return self.analyze(kind, np.zeros(frames * world.HOP, np.float32))

    def shift_pitch(self, kind: Representation, speech: FloatArray, semitones: float) -> FloatArray:
        """``kind`` features (T, F) spoken ``semitones`` higher (negative: lower), as a new array: WORLD's
        log F0 moves alone; log-mel frames are scaled along frequency, formants with the harmonics (a
        mel vocoder follows within 0.4 semitones over +-4 in the high voices; docs/design.md, "Pitch in a
        mel model")."""
        out = np.array(speech, np.float32)
        if kind == "mel":
            return shift_bands(out, self.mel_bands, semitones)
        out[:, world.LF0] += semitones * np.log(2.0) / 12.0
        return out


def parse_layout(name: str) -> tuple[Representation, SpeechLayout]:
    """A sample's layout name (:meth:`SpeechLayout.name`) -> the kind of features and their layout;
    ValueError naming the name when it is neither form."""
    if name == "world":
        return "world", SpeechLayout()
    match = re.fullmatch(r"mel(\d+)x(\d+)/(\d+)", name)
    if match is None:
        raise ValueError(f"speech layout {name!r} is neither 'world' nor 'mel<bands>x<subframes>/<n_fft>'")
    bands, subframes, n_fft = (int(g) for g in match.groups())
    layout = SpeechLayout(mel_bands=bands, mel_subframes=subframes, mel_n_fft=n_fft)
    layout.mel_options()  # validates it
    return "mel", layout
