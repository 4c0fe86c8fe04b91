"""Mixing the face: idle motion, listening and speech layers into one motion frame per video frame.

Idle motion (blinks, small head drift) always runs. While nothing plays, the listening layer (the
teacher's, or the joint model's) sits on top of it; while an utterance plays, its speech layer does (an
utterance from the joint model brings its own blinks and idle motion). A switch between listening and
speaking crossfades over ``CROSSFADE_S``, so an interruption never snaps the face.

Letters in shape comments: D = MOTION_DIM.
"""

from __future__ import annotations

import numpy as np

from avatar_core.config import BehaviourConfig
from avatar_core.engine.listening import ModelListening
from avatar_core.engine.speech import Playing
from avatar_core.motion import FloatArray, clip
from avatar_core.partner import PartnerFrame
from avatar_core.teacher.idle import IdleLayer, compose
from avatar_core.teacher.listening import ListeningLayer

CROSSFADE_S = 0.12  # between speaking and listening motion, so an interruption never snaps the face


class MotionMixer:
    """One motion frame (D,) per video frame from the idle, listening and speech layers."""

    def __init__(
        self,
        fps: float,
        behaviour: BehaviourConfig,
        seed: int = 0,
        model_listening: ModelListening | None = None,
    ) -> None:
        self.fps = fps
        rng = np.random.default_rng(seed)
        self._idle = IdleLayer(fps, behaviour, rng)
        self._listening = ListeningLayer(fps, behaviour, rng)
        self._model_listening = model_listening
        self._layer_source = "listen"
        self._fade_from: FloatArray | None = None
        self._fade_left = 0.0
        self._last_layer: FloatArray | None = None

    def _speech_layer_at(self, vt: float, playing: Playing) -> FloatArray:
        """The playing utterance's motion at ``vt``; phrase ends reached tell the idle layer (a blink)."""
        local = vt - playing.started_at
        while playing.phrase_ends and playing.phrase_ends[0] <= local:
            playing.phrase_ends.pop(0)
            self._idle.phrase_end()
        motion = playing.utterance.motion
        index = int(np.clip(round(local * playing.utterance.fps), 0, len(motion) - 1))
        frame: FloatArray = motion[index]
        return frame

    def frame(self, vt: float, partner: PartnerFrame | None, playing: Playing | None) -> FloatArray:
        """The motion at video time ``vt``: ``partner`` is the user's current perception (None when
        stale), ``playing`` the utterance being played (None while listening or idle)."""
        idle = self._idle.step()
        listening = compose(idle, self._listening.step(partner))
        speech = self._speech_layer_at(vt, playing) if playing is not None else None
        if self._model_listening is not None:
            self._model_listening.observe(vt, partner)
            if speech is None:  # complete motion: the model's own blinks and idle motion
                listening = self._model_listening.frame(vt, listening)
            else:
                self._model_listening.forget_shown()
        source = "speak" if speech is not None else "listen"
        layer = listening
        if speech is not None and playing is not None:  # a complete utterance brings its own idle motion
            layer = speech if playing.utterance.complete else compose(idle, speech)
        if source != self._layer_source and self._last_layer is not None:
            self._fade_from, self._fade_left = self._last_layer, CROSSFADE_S
            self._layer_source = source
        if self._fade_left > 0 and self._fade_from is not None:
            alpha = 1.0 - self._fade_left / CROSSFADE_S
            layer = alpha * layer + (1.0 - alpha) * self._fade_from
            self._fade_left -= 1.0 / self.fps
        self._last_layer = layer
        return clip(layer)
