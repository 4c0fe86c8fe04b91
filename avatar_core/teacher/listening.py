"""Listening motion driven by the partner: backchannel nods, smile mirroring, gaze, face reactions.

Rules (one frame at a time, so the live Engine and the offline dataset share them):
- a backchannel opportunity is a low-pitch region of the partner's speech (below their running
  26th-percentile F0) lasting >= 110 ms after >= 0.7 s of speech, answered 700 ms after it is detected
  (Ward & Tsukahara 2000: the wait puts the nod where the phrase that ends low is followed by a pause),
  or a pause of >= 250 ms after >= 0.5 s of speech (a short phrase such as "Of course." counts; a lone
  "Hi." or a hesitation does not), answered 150-300 ms later; the avatar nods at each with
  ``behaviour.backchannel_rate``, so a pause after a low-pitched phrase end, two cues, is answered more
  often than either cue alone; the chance rises the longer the avatar has given no feedback (a
  listener is not still for long while someone talks to it);
- nods keep ``NOD_REFRACTORY_S`` apart, so the avatar does not nod constantly; a pause heard while the
  last nod is too recent is answered once that time is over, if the pause is still going on;
- the partner's smile is mirrored after a lag drawn once per session from 0.3-0.6 s;
- gaze rests on the partner and leaves it in short episodes, ``behaviour.gaze_aversion`` of the time;
- the partner's nods and brow raises are echoed, smaller, a moment later.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence

import numpy as np

from avatar_core.config import BehaviourConfig
from avatar_core.motion import INDEX, MOTION_DIM, FloatArray, clip
from avatar_core.partner import PartnerFrame
from avatar_core.teacher.idle import IdleLayer, compose

LOW_PITCH_MIN_S = 0.11  # a region of low pitch this long ...
LOW_PITCH_SPEECH_S = 0.7  # ... after this much speech is a cue ...
LOW_PITCH_WAIT_S = (0.6, 0.8)  # ... answered this long after it is detected (Ward & Tsukahara: 700 ms)
PAUSE_MIN_S = 0.25  # a silence this long ...
PAUSE_SPEECH_S = 0.5  # ... after this much speech is a cue ...
PAUSE_WAIT_S = (0.15, 0.3)  # ... answered this long after it is heard (a listener's reaction time)
NOD_REFRACTORY_S = 1.5  # between the starts of two nods (a nod lasts _NOD_S)
FEEDBACK_DUE_S = 3.0  # the chance of a nod grows with the time since the last (see _chance)
_NOD_S = 0.45


class ListeningLayer:
    """Steps one frame at a time from the latest :class:`PartnerFrame` (or None when nobody is there)."""

    def __init__(self, fps: float, behaviour: BehaviourConfig, rng: np.random.Generator) -> None:
        self.fps = fps
        self.dt = 1.0 / fps
        self.behaviour = behaviour
        self.rng = rng
        self.t = 0.0
        self.f0_history: deque[float] = deque(maxlen=int(10 * fps))  # the last 10 s of voiced F0 ...
        self.f0_sorted: list[float] = []  # ... and the same values sorted, for the running percentile
        self.speech_run = 0.0  # seconds the partner has been speaking in this stretch
        self.low_run = 0.0
        self.pause_run = 0.0
        self.low_fired = False
        self.pause_fired = False
        self.pause_waiting = False  # a pause heard during the refractory time, to answer after it
        self.nods: list[tuple[float, float]] = []  # (start time, amplitude)
        self.last_nod = -10.0
        self.smile_lag = float(rng.uniform(0.3, 0.6))
        self.smile_buffer: deque[float] = deque([0.0] * max(1, round(self.smile_lag * fps)))
        self.smile = 0.0
        self.brow_buffer: deque[float] = deque([0.0] * max(1, round(0.3 * fps)))
        self.brow = 0.0
        self.averted_until = -1.0
        self.aversion = np.zeros(2, np.float32)
        self.partner_nod_seen = False
        self.backchannels = 0  # count, for metrics and tests

    # -- decisions ---------------------------------------------------------------------------------

    def _refractory(self, start: float) -> bool:
        """Whether a nod starting at ``start`` would come too soon after the last one."""
        return start - self.last_nod < NOD_REFRACTORY_S

    def _chance(self, start: float) -> float:
        """The chance of answering a cue with a nod at ``start``: ``backchannel_rate``, rising the longer
        the avatar has given no feedback (each ``FEEDBACK_DUE_S`` of it past the refractory time counts
        as one more cue), so a listener is never still for long while someone talks to it."""
        quiet = max(0.0, start - self.last_nod - NOD_REFRACTORY_S)
        return float(1.0 - (1.0 - self.behaviour.backchannel_rate) ** (1.0 + quiet / FEEDBACK_DUE_S))

    def _opportunity(self, strength: float, wait_s: tuple[float, float]) -> None:
        """A backchannel cue: nod ``wait_s`` later with the persona's chance, unless too soon."""
        start = self.t + float(self.rng.uniform(*wait_s))
        if self._refractory(start) or self.rng.uniform() > self._chance(start):
            return
        amplitude = 0.09 * strength * self.behaviour.expressiveness * float(self.rng.uniform(0.8, 1.2))
        self.nods.append((start, amplitude))
        if self.rng.uniform() < 0.3:  # sometimes a double nod
            self.nods.append((start + _NOD_S * 0.9, 0.6 * amplitude))
        self.last_nod = start
        self.backchannels += 1

    def _low_pitch(self) -> float:
        """The partner's running 26th-percentile F0 (``np.percentile``'s linear interpolation), 0 until
        20 voiced frames are known. Kept sorted as it goes: a percentile per frame costs too much."""
        values = self.f0_sorted
        if len(values) < 20:
            return 0.0
        position = 0.26 * (len(values) - 1)
        low = int(position)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (position - low)

    def _hear(self, partner: PartnerFrame) -> None:
        voiced = partner.speaking and partner.f0_hz > 0
        if voiced:
            if len(self.f0_history) == self.f0_history.maxlen:
                del self.f0_sorted[bisect.bisect_left(self.f0_sorted, self.f0_history[0])]
            self.f0_history.append(partner.f0_hz)
            bisect.insort(self.f0_sorted, partner.f0_hz)
        if partner.speaking:
            self.speech_run += self.dt
            if self.pause_run > 0:
                self.pause_fired = self.pause_waiting = False
            self.pause_run = 0.0
        else:
            self.pause_run += self.dt
            if self.pause_run >= PAUSE_MIN_S and self.speech_run >= PAUSE_SPEECH_S and not self.pause_fired:
                self.pause_fired = True
                # Too soon after the last nod: answer once the refractory time is over, if still silent.
                self.pause_waiting = self._refractory(self.t + PAUSE_WAIT_S[1])
                if not self.pause_waiting:
                    self._opportunity(1.0, PAUSE_WAIT_S)
            elif self.pause_waiting and not self._refractory(self.t + PAUSE_WAIT_S[0]):
                self.pause_waiting = False
                self._opportunity(1.0, PAUSE_WAIT_S)
            if self.pause_run >= 1.0:
                self.speech_run = 0.0
                self.pause_waiting = False
        threshold = self._low_pitch() if voiced else 0.0
        if voiced and threshold > 0 and partner.f0_hz < threshold:
            self.low_run += self.dt
            if (
                self.low_run >= LOW_PITCH_MIN_S
                and self.speech_run >= LOW_PITCH_SPEECH_S
                and not self.low_fired
            ):
                self.low_fired = True
                self._opportunity(0.8, LOW_PITCH_WAIT_S)
        elif voiced or not partner.speaking:
            self.low_run = 0.0
            self.low_fired = False

    def _see(self, partner: PartnerFrame) -> None:
        if partner.nod > 0.5 and not self.partner_nod_seen:
            self.partner_nod_seen = True
            if self.t - self.last_nod >= NOD_REFRACTORY_S:
                amplitude = 0.05 * self.behaviour.expressiveness
                self.nods.append((self.t + 0.3, amplitude))
                self.last_nod = self.t + 0.3
        elif partner.nod < 0.2:
            self.partner_nod_seen = False

    # -- motion ------------------------------------------------------------------------------------

    def step(self, partner: PartnerFrame | None) -> FloatArray:
        """The next frame of listening motion (D,), as offsets from neutral."""
        out = np.zeros(MOTION_DIM, np.float32)
        seen_smile, seen_brow = 0.0, 0.0
        if partner is not None:
            self._hear(partner)
            if partner.face_visible:
                self._see(partner)
                seen_smile, seen_brow = partner.smile, partner.brow_raise
        self.smile_buffer.append(seen_smile)
        delayed_smile = self.smile_buffer.popleft()
        self.brow_buffer.append(seen_brow)
        delayed_brow = self.brow_buffer.popleft()
        # First-order followers so mirrored expressions ease in and out.
        self.smile += (delayed_smile * self.behaviour.smile_mirroring - self.smile) * min(1.0, self.dt / 0.2)
        self.brow += (0.5 * delayed_brow - self.brow) * min(1.0, self.dt / 0.2)
        smile = self.smile * self.behaviour.expressiveness
        out[INDEX["smile_l"]] = out[INDEX["smile_r"]] = smile
        out[INDEX["squint"]] = 0.4 * smile
        out[INDEX["brow_up_l"]] = out[INDEX["brow_up_r"]] = self.brow

        pitch = 0.0
        for start, amplitude in self.nods:
            u = (self.t - start) / _NOD_S
            if 0.0 <= u < 1.0:
                pitch += amplitude * float(np.sin(np.pi * u) ** 2)
        self.nods = [(s, a) for s, a in self.nods if self.t - s < _NOD_S]
        out[INDEX["head_pitch"]] = pitch
        if partner is not None and partner.speaking:
            out[INDEX["head_roll"]] = 0.03 * self.behaviour.expressiveness  # attentive tilt

        if self.t >= self.averted_until:
            self.aversion[:] = 0.0
            mean_episode = 1.0
            share = min(self.behaviour.gaze_aversion, 0.9)
            hazard = share / (1.0 - share) / mean_episode * self.dt
            if self.rng.uniform() < hazard:
                self.averted_until = self.t + float(self.rng.uniform(0.5, 1.5))
                side = 1.0 if self.rng.uniform() < 0.5 else -1.0
                self.aversion[:] = (side * self.rng.uniform(0.3, 0.55), self.rng.uniform(-0.3, 0.25))
        out[INDEX["gaze_x"]], out[INDEX["gaze_y"]] = self.aversion
        self.t += self.dt
        return out


def listen(
    partner: Sequence[PartnerFrame], fps: float, behaviour: BehaviourConfig, seed: int = 0
) -> FloatArray:
    """Complete listening motion (T, D) for one partner frame per output frame; deterministic."""
    rng = np.random.default_rng(seed)
    idle = IdleLayer(fps, behaviour, rng)
    layer = ListeningLayer(fps, behaviour, rng)
    out = np.empty((len(partner), MOTION_DIM), np.float32)
    for k, frame in enumerate(partner):
        out[k] = compose(idle.step(), layer.step(frame))
    return clip(out)
