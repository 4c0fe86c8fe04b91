"""Whisper tiny.en as the judge of intelligibility, and the quality guard of a joint-model checkpoint.

:func:`transcriber` is the one Whisper set-up every WER in dyad uses (``dyad train eval``, the guard,
``bench/ceiling.py``): int8, greedy, English, no VAD filter, 24 kHz audio resampled to 16 kHz.

The guard makes a checkpoint speak :data:`GUARD_SENTENCES` in each of its voices and fails when the WER
of any voice exceeds :data:`GUARD_WER_MAX`, so a worse checkpoint cannot land silently (a test and
``dyad doctor`` run it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from avatar_core.eval.metrics import word_error_rate

if TYPE_CHECKING:
    from avatar_core.model.inference import JointModel

Transcribe = Callable[[npt.NDArray[np.float32]], str]

# Everyday sentences of the kind an avatar says, with numbers, names and bilabials; none is in the
# training corpus's templates verbatim. Fixed: the threshold below was measured on exactly these.
GUARD_SENTENCES = (
    "Good morning, how can I help you today?",
    "The library opens at nine and closes at eight in the evening.",
    "Please take a seat, a nurse will call your name shortly.",
    "Your appointment is on Monday at half past two.",
    "Thank you for waiting, the next bus leaves in five minutes.",
)

# Measured (2026-12-05): the committed five-voice checkpoint (size base, trained on a GPU; 4 Euler steps,
# speech temperature 0.4, the leading pad generated as trained) with the bundled neural vocoder scores WER
# 0.059 (jf_alpha), 0.020 (jf_gongitsune), 0.078 (jf_nezumi, 4 word errors in 51 words), 0.059 (jf_tebukuro)
# and 0.000 (jm_kumo) here, as `dyad doctor` loads it; `dyad doctor` prints the figures. Generation is
# deterministic, Whisper's int8 kernels may differ slightly between CPUs, so the guard (0.25) allows several
# more errors than the worst voice (eight): an unfinished or broken checkpoint or vocoder (WER 0.5 to 1)
# fails, and a retrained one should pass with room to spare.
GUARD_WER_MAX = 0.25


def transcriber(threads: int = 2) -> Transcribe:
    """Whisper tiny.en (bundled, int8): 24 kHz float audio (S,) -> text."""
    from faster_whisper import WhisperModel
    from scipy.signal import resample_poly

    from avatar_core import bundled

    model = WhisperModel(
        str(bundled.whisper_model_dir()), device="cpu", compute_type="int8", cpu_threads=threads
    )

    def transcribe(audio: npt.NDArray[np.float32]) -> str:
        wave = resample_poly(audio, 2, 3).astype(np.float32)  # 24 -> 16 kHz
        segments, _ = model.transcribe(wave, language="en", beam_size=1, vad_filter=False)
        return " ".join(s.text.strip() for s in segments)

    return transcribe


def spoken_wer(sentences: Sequence[str], transcripts: Sequence[str]) -> float:
    """Corpus WER of what Whisper heard against the text, both sides read the same way (:func:`canonical`)."""
    return word_error_rate([canonical(s) for s in sentences], [canonical(t) for t in transcripts])


def canonical(text: str) -> str:
    """``text`` as WER compares it: first spelled out as it is spoken (dyad's own :func:`normalize`: "6:45" ->
    "six forty-five", as the voice said it), then in the canonical written form of Whisper's English
    normaliser (the one Whisper's own WER figures use): numbers back to digits, so that "six forty-five",
    "6:45" and "645" are all "645" and a phone number is one string of digits; British spellings American;
    fillers dropped. Whisper writes what it hears as "645", "4.50am" or "253. 555. 5227" depending on the
    pauses, which the spoken form alone would score as several wrong words (docs/design.md, "Evaluation")."""
    from avatar_core.text.normalize import normalize

    return _whisper_normalizer()(normalize(text))


@functools.cache
def _whisper_normalizer() -> Callable[[str], str]:
    from whisper_normalizer.english import EnglishTextNormalizer

    normalizer: Callable[[str], str] = EnglishTextNormalizer()
    return normalizer


def guard(model: JointModel, transcribe: Transcribe | None = None) -> dict[str, float]:
    """WER of ``model`` on :data:`GUARD_SENTENCES` for each of its voices (blocking, a few seconds each)."""
    transcribe = transcribe or transcriber()
    return {
        voice: spoken_wer(
            GUARD_SENTENCES, [transcribe(model.generate(text, voice).audio) for text in GUARD_SENTENCES]
        )
        for voice in model.voices
    }


class QualityError(AssertionError):
    """A checkpoint speaks worse than the guard allows."""


def check_guard(wers: dict[str, float]) -> str:
    """A one-line summary, or :class:`QualityError` naming every voice over :data:`GUARD_WER_MAX`."""
    summary = ", ".join(f"{voice} WER {wer:.3f}" for voice, wer in wers.items())
    bad = [voice for voice, wer in wers.items() if not wer <= GUARD_WER_MAX]
    if bad:
        raise QualityError(
            f"{summary}: {', '.join(bad)} above the guard's {GUARD_WER_MAX} (Whisper tiny.en on "
            f"{len(GUARD_SENTENCES)} fixed sentences); this checkpoint speaks less intelligibly than "
            "the committed one"
        )
    return f"{summary} (guard <= {GUARD_WER_MAX})"
