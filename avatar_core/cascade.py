"""Cascade mode: Kokoro speaks the text, the procedural teacher animates the face from its exact timing.

:class:`CascadeVoice` is a :class:`~avatar_core.voice.Voice`: text in, an
:class:`~avatar_core.voice.Utterance` out.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avatar_core.config import BehaviourConfig, VoiceConfig
from avatar_core.frames import AUDIO_RATE, to_int16
from avatar_core.motion import resample
from avatar_core.speech.features import MODEL_FPS
from avatar_core.speech.prosody import prosody_from_audio
from avatar_core.speech.world import shift_pitch
from avatar_core.teacher.speaking import speech_layer
from avatar_core.text.chunking import ends_sentence
from avatar_core.voice import AudioDriver, Utterance

if TYPE_CHECKING:
    from avatar_core.tts.kokoro import KokoroTTS

# Silence kept after a chunk that ends inside a sentence. With the next chunk's 50 ms lead (trim_lead) the
# seam is a 100 ms phrase break, not Kokoro's 0.5-0.7 s sentence end (docs/design.md, "The first chunk").
SEAM_SILENCE_S = 0.05


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
        tts: KokoroTTS | None = None,
    ) -> None:
        from avatar_core.tts.kokoro import KokoroTTS

        self.voice = voice
        self.behaviour = behaviour
        self.fps = fps
        self.tts = tts if tts is not None else KokoroTTS(cache_dir)  # a shared one is thread-safe
        self.driver = driver
        self._count = 0
        self._lock = threading.Lock()

    def utterance(self, text: str) -> Utterance:
        """Speak ``text``: audio, speech-layer motion and timing."""
        speech = self.tts.synthesize_timed(text, self.voice.speaker, self.voice.rate).trim_lead()
        if not ends_sentence(text):  # the rest of the sentence follows: no sentence-end pause
            speech = speech.trim_tail(SEAM_SILENCE_S)
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
