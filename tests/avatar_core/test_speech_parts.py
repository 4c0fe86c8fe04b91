"""espeak-ng phonemes and the Kokoro voice, with the real bundled libraries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_core.text.espeak import phonemize, phonemize_clauses
from avatar_core.tts.kokoro import SAMPLE_RATE, KokoroTTS


def test_espeak_gives_ipa_with_stress() -> None:
    ipa = phonemize("The library opens at nine.")
    assert "ˈ" in ipa and "ð" in ipa


def test_espeak_splits_clauses_at_punctuation() -> None:
    assert len(phonemize_clauses("Hello there, how are you? Fine.")) == 3


def test_espeak_unknown_voice_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no voice"):
        phonemize("hello", "xx-nowhere")


@pytest.fixture(scope="module")
def tts(tmp_path_factory: pytest.TempPathFactory) -> KokoroTTS:
    return KokoroTTS(Path(tmp_path_factory.mktemp("cache")))


def test_kokoro_speaks_english(tts: KokoroTTS) -> None:
    short = tts.synthesize("Hi.", "jf_alpha")
    long = tts.synthesize("Welcome to the library, how can I help you today?", "jm_kumo")
    assert short.dtype == np.float32 and short.ndim == 1
    assert long.size > 1.5 * SAMPLE_RATE > short.size
    assert float(np.sqrt(np.mean(long**2))) > 0.01


def test_kokoro_rate_changes_duration(tts: KokoroTTS) -> None:
    text = "Please take a seat, a nurse will call you."
    slow, fast = tts.synthesize(text, speed=0.8), tts.synthesize(text, speed=1.25)
    assert slow.size > 1.3 * fast.size


def test_kokoro_rejects_unknown_voice(tts: KokoroTTS) -> None:
    with pytest.raises(ValueError, match="jf_alpha"):
        tts.synthesize("hello", "af_heart")
