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
from avatar_core.motion import INDEX, MOTION_DIM, FloatArray, clip
from avatar_core.partner import PartnerFrame
from avatar_core.teacher.idle import IdleLayer, compose
from avatar_core.teacher.listening import ListeningLayer

CROSSFADE_S = 0.12  # between speaking and listening motion, so an interruption never snaps the face
ACK_S = 0.5  # the acknowledgement: a small nod with raised brows when the user's turn ends
ACK_NOD = 0.06  # head pitch at its peak (a backchannel nod is about 0.09)
ACK_BROW = 0.3  # brow raise at its peak


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
        self._expressiveness = behaviour.expressiveness
        self._ack_from: float | None = None  # video time the acknowledgement starts

    def acknowledge(self, vt: float) -> None:
        """Acknowledge the user from video time ``vt``: a small nod and a brow raise over ``ACK_S``,
        on top of whatever the face is doing (the answer is being prepared)."""
        self._ack_from = vt

    def acknowledgement(self, vt: float) -> FloatArray:
        """The acknowledgement's offsets (D,) at video time ``vt`` (zeros outside it)."""
        out = np.zeros(MOTION_DIM, np.float32)
        if self._ack_from is None:
            return out
        u = (vt - self._ack_from) / ACK_S
        if not 0.0 <= u < 1.0:
            return out
        rise = float(np.sin(np.pi * u) ** 2)  # eases in and out
        out[INDEX["head_pitch"]] = ACK_NOD * self._expressiveness * rise
        out[INDEX["brow_up_l"]] = out[INDEX["brow_up_r"]] = ACK_BROW * self._expressiveness * rise
        return out

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
        return clip(layer + self.acknowledgement(vt))
