"""Whisper's own confidence: which transcribed segments to trust (the live STT and the video converter)."""

from __future__ import annotations

from typing import Any

# Whisper invents words for silence and noise ("Thank you.", "you"); its own confidence drops them.
NO_SPEECH_PROB_MAX = 0.6
AVG_LOGPROB_MIN = -1.0
COMPRESSION_RATIO_MAX = 2.4  # higher means looping, repeated text: a hallucination


def doubtful(segment: Any) -> bool:
    """True when a faster-whisper segment is probably invented (silence, noise, or a loop)."""
    return bool(
        segment.no_speech_prob > NO_SPEECH_PROB_MAX
        or segment.avg_logprob < AVG_LOGPROB_MIN
        or segment.compression_ratio > COMPRESSION_RATIO_MAX
    )
