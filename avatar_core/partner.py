"""What the avatar perceives of the person it talks with, one record per video frame.

The agent computes these from the user's audio (VAD, F0, energy) and video (face landmarks); the
procedural teacher and the joint model's dyadic conditioning consume them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PartnerFrame:
    """The partner's observable state at time ``t`` (seconds on the engine clock)."""

    t: float
    speaking: bool = False  # VAD decision
    f0_hz: float = 0.0  # 0 when unvoiced
    energy: float = 0.0  # RMS of the 16 kHz signal, linear
    face_visible: bool = False
    smile: float = 0.0  # 0..1
    mouth_open: float = 0.0  # 0..1
    nod: float = 0.0  # 0..1, strength of a head nod in progress
    brow_raise: float = 0.0  # 0..1


# The joint model's dyadic conditioning: one vector per model frame, speech part then face part.
PARTNER_FIELDS = (
    "speaking", "voiced", "log_f0", "log_energy", "face_visible", "smile", "mouth_open", "nod", "brow_raise",
)  # fmt: skip
PARTNER_DIM = len(PARTNER_FIELDS)


def partner_vector(frame: PartnerFrame | None) -> list[float]:
    """``PARTNER_DIM`` numbers of order 1 describing ``frame`` (all zero when nobody is there)."""
    if frame is None:
        return [0.0] * PARTNER_DIM
    voiced = frame.f0_hz > 0
    return [
        float(frame.speaking),
        float(voiced),
        math.log(frame.f0_hz / 150.0) if voiced else 0.0,  # about -1..1 over the speaking range
        max(-10.0, math.log(frame.energy + 1e-5)) / 5.0 + 1.0,  # silence ~ -1.3, loud speech ~ 0.6
        float(frame.face_visible),
        frame.smile,
        frame.mouth_open,
        frame.nod,
        frame.brow_raise,
    ]
