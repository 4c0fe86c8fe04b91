"""What the avatar perceives of the person it talks with, one record per video frame.

The agent computes these from the user's audio (VAD, F0, energy) and video (face landmarks); the
procedural teacher and the joint model's dyadic conditioning consume them.
"""

from __future__ import annotations

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
