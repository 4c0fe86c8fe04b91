"""Cascade mode's voice: Kokoro's speech as the Engine plays it, chunk after chunk."""

from __future__ import annotations

import numpy as np

from avatar_core.cascade import SEAM_SILENCE_S, CascadeVoice
from avatar_core.config import AppSettings, BehaviourConfig, VoiceConfig
from avatar_core.frames import AUDIO_RATE
from avatar_core.speech.prosody import sound_end_s
from avatar_core.teacher.speaking import Phone
from avatar_core.tts.kokoro import TimedSpeech


def silence_after_sound_s(audio: np.ndarray) -> float:
    """Seconds of audio after its last sound."""
    end = sound_end_s(audio.astype(np.float32), AUDIO_RATE)
    assert end is not None
    return audio.size / AUDIO_RATE - end


def test_a_chunk_inside_a_sentence_ends_without_the_sentence_end_pause() -> None:
    voice = CascadeVoice(
        VoiceConfig(mode="cascade", speaker="jm_kumo"), BehaviourConfig(), 25.0, AppSettings().cache_dir
    )
    inside = voice.utterance("Can I pay for")  # the rest of the sentence follows
    whole = voice.utterance("Can I pay for parking by card?")
    assert silence_after_sound_s(inside.audio) <= SEAM_SILENCE_S + 0.011
    assert silence_after_sound_s(whole.audio) > 0.3  # Kokoro's own pause after a sentence stays
    assert inside.phones[-1].end <= inside.duration_s + 1e-6
    assert inside.motion.shape[0] == int(np.ceil(inside.duration_s * 25.0))


def test_trim_tail_keeps_the_sound_and_clips_the_phones() -> None:
    rng = np.random.default_rng(0)
    sound = (0.3 * rng.standard_normal(AUDIO_RATE)).astype(np.float32)  # 1 s
    audio = np.concatenate(
        [np.zeros(AUDIO_RATE // 10, np.float32), sound, np.zeros(AUDIO_RATE // 2, np.float32)]
    )
    phones = [Phone("", 0.0, 0.1), Phone("a", 0.1, 1.3), Phone("", 1.3, 1.6)]
    trimmed = TimedSpeech(audio, phones, "a").trim_tail(0.05)
    assert trimmed.duration_s == 1.15
    assert [(p.symbol, p.end) for p in trimmed.phones] == [("", 0.1), ("a", 1.15)]
    silent = TimedSpeech(np.zeros(AUDIO_RATE, np.float32), phones, "a")
    assert silent.trim_tail(0.05) is silent
