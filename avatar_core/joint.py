"""Joint mode: the AV-Flow model speaks the text and moves the face in one pass.

:class:`JointVoice` is the Engine's voice in joint mode: text chunk -> :class:`~avatar_core.cascade.Utterance`
with the model's audio and its complete motion (speech articulation, prosodic head motion, blinks),
resampled to the video frame rate. The persona's pitch shift is applied to the predicted F0 before the
vocoder, so it costs nothing.
"""

from __future__ import annotations

import numpy as np

from avatar_core.cascade import Utterance, to_int16
from avatar_core.config import VoiceConfig
from avatar_core.model.inference import JointModel
from avatar_core.motion import resample
from avatar_core.speech.features import MODEL_FPS


class JointVoice:
    """Text -> speech + motion with a loaded :class:`JointModel`. ``utterance`` is blocking."""

    def __init__(self, voice: VoiceConfig, fps: float, model: JointModel) -> None:
        speaker = voice.speaker if voice.speaker in model.voices else model.voices[0]
        self.voice = voice
        self.speaker = speaker
        self.fps = fps
        self.model = model

    def utterance(self, text: str) -> Utterance:
        """Speak ``text``: audio, complete motion at ``fps`` and the phoneme timeline."""
        out = self.model.generate(text, self.speaker, pitch_semitones=self.voice.pitch_semitones)
        frames = max(1, int(np.ceil(out.duration_s * self.fps)))
        motion = (
            resample(out.motion, MODEL_FPS, self.fps, frames)
            if out.motion.size
            else np.zeros((frames, 22), np.float32)
        )
        return Utterance(text, to_int16(out.audio), motion, self.fps, out.phones, [], complete=True)
