"""The Engine's output: timestamped audio and video frames, one definition for all transports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

AUDIO_RATE = 24_000
AUDIO_FRAME_S = 0.020
AUDIO_FRAME_SAMPLES = 480  # 20 ms at 24 kHz

AvatarState = Literal["idle", "listening", "speaking"]


@dataclass(frozen=True)
class AudioFrame:
    """20 ms of mono int16 audio at 24 kHz starting at ``pts_s`` on the engine clock."""

    pts_s: float
    samples: npt.NDArray[np.int16]  # (480,)
    speech_id: str | None = None  # the SpeechHandle being played, if any


@dataclass(frozen=True)
class VideoFrame:
    """One RGB video frame shown at ``pts_s``, with the motion that drew it and the avatar's state."""

    pts_s: float
    image: npt.NDArray[np.uint8]  # (H, W, 3) RGB
    motion: npt.NDArray[np.float32]  # (D,)
    state: AvatarState


OutputFrame = AudioFrame | VideoFrame


def to_int16(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """Float audio in [-1, 1] -> int16 PCM."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
