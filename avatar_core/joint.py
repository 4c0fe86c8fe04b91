"""Joint mode: the AV-Flow model speaks the text and moves the face in one pass.

:class:`JointVoice` is the Engine's voice in joint mode: text chunk -> :class:`~avatar_core.voice.Utterance`
with the model's audio and its complete motion (speech articulation, prosodic head motion, blinks),
resampled to the video frame rate. The persona's voice acts inside the model: ``voice.speaker`` selects
the checkpoint's speaker, ``voice.rate`` scales the predicted phoneme durations (speech and lips stay
together) and ``voice.pitch_semitones`` shifts the predicted pitch before the vocoder (WORLD's F0, or the
bands of a mel model's frames), so both cost nothing.
"""

from __future__ import annotations

import logging

import numpy as np

from avatar_core.config import VoiceConfig
from avatar_core.frames import to_int16
from avatar_core.model.checkpoint import check_speaker
from avatar_core.model.inference import JointModel
from avatar_core.motion import resample
from avatar_core.speech.features import MODEL_FPS
from avatar_core.voice import Utterance

log = logging.getLogger(__name__)


class JointVoice:
    """Text -> speech + motion with a loaded :class:`JointModel`. ``utterance`` is blocking."""

    def __init__(self, voice: VoiceConfig, fps: float, model: JointModel) -> None:
        """Raises :class:`UnknownSpeakerError` when a joint-mode ``voice.speaker`` is not in the checkpoint.

        A cascade-mode voice speaks with Kokoro; here the model only drives the face from that audio, and
        its first speaker stands in for any text it is asked to say."""
        if voice.mode == "joint":
            self.speaker = check_speaker(voice.speaker, model.voices, model.path)
        else:
            self.speaker = voice.speaker if voice.speaker in model.voices else model.voices[0]
        self.voice = voice
        self.fps = fps
        self.model = model
        vocoder = model.vocoder_for(voice.pitch_semitones)
        if vocoder is not model.vocoder:
            log.info(
                "voice.pitch_semitones %+.1f: speaking through the %s vocoder (the %s one does not follow "
                "a shifted pitch)", voice.pitch_semitones, vocoder.name, model.vocoder.name,
            )  # fmt: skip

    def utterance(self, text: str) -> Utterance:
        """Speak ``text``: audio, complete motion at ``fps`` and the phoneme timeline."""
        out = self.model.generate(
            text, self.speaker, pitch_semitones=self.voice.pitch_semitones, rate=self.voice.rate
        )
        frames = max(1, int(np.ceil(out.duration_s * self.fps)))
        motion = (
            resample(out.motion, MODEL_FPS, self.fps, frames)
            if out.motion.size
            else np.zeros((frames, 22), np.float32)
        )
        return Utterance(text, to_int16(out.audio), motion, self.fps, out.phones, [], complete=True)
