"""Listening features: the user's audio and video -> :class:`PartnerFrame` records.

Audio (16 kHz): every 20 ms of audio, the RMS energy of the last 40 ms and, while the VAD says the user
speaks, the F0 of the last 60 ms. F0 comes from YIN (a normalised autocorrelation difference): pyworld's
``dio`` needs about 200 ms of signal before it reports voicing at all, too much context for 60 ms.

Video (RGB): dlib's HOG face detector (no upsampling) on the frame scaled to about 320 px wide (for
smaller faces, on a crop around the face found last), then the 68-point predictor on the full-resolution
box. The landmarks become measures in units of the inter-ocular distance (eye corners: the lids move when
blinking) in the face's own frame (x along the eye line, y down), so the face's size, position and roll
do not matter. Expression measures are read against a per-person baseline, a low
quantile of the person's recent measures, so a resting face reads about 0:

* smile: mouth corners widen and lift relative to the lips' centre;
* mouth_open: the inner-lip gap over the mouth's inner width;
* brow_raise: the brows' height above a reference halfway between the eye line and the nose tip (the
  eye corners alone shift when dlib sees a blink, the nose tip alone when the head pitches);
* nod: the largest downward excursion of the nose tip in the last 0.5 s. On a nodding head the nose tip
  drops with the whole head and swings further down relative to the eyes; a sustained look down reads as
  a nod only while it is under 0.5 s old.

Thread-safe: one lock guards the state; dlib runs outside it (serialised by a second lock), so
``frame`` never waits for a video analysis.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from avatar_core.bundled import face_landmarks_model
from avatar_core.partner import PartnerFrame

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

SAMPLE_RATE = 16_000
HOP = 320  # samples between audio updates (20 ms)
ENERGY_SAMPLES = 640  # RMS over the last 40 ms
F0_SAMPLES = 960  # F0 over the last 60 ms
F0_FLOOR, F0_CEIL = 60.0, 500.0
YIN_THRESHOLD = 0.2  # CMND dip that counts as periodic; 0.3 let through octave errors on Kokoro speech
VOICED_MIN_RMS = 0.003  # about -50 dBFS: quieter frames are unvoiced whatever their periodicity
STALE_AUDIO_S = 0.3  # audio older than this reads as silence (the stream stalled)
# A listener hears a pause after two VAD windows of silence: the ``speaking`` flag given to push_audio ends
# then, not when the turn-taking VAD's longer silence would end a turn (a backchannel answers the pause).
HEARD_PAUSE_MS = 64

DETECT_WIDTH = 320  # frames wider than this are scaled down for the face detector
WIDE_DETECT_WIDTH = 640  # the occasional search for faces too small to find at DETECT_WIDTH
WIDE_SEARCH_EVERY_S = 1.0  # it costs about 4x a normal search, so at most this often while no face
TRACK_FACE_PX = 120  # a tracked face is scaled to about this wide (dlib's window is 80 px)
TRACK_CROP = 2.2  # the tracking crop's side, in face boxes: room for a head moving between frames
TRACK_MAX_ZOOM = 2.5
CROP_SLACK = 0.15  # the crop re-centres once the face is this far (in face sizes) from its centre
STALE_VIDEO_S = 1.0  # no analysed frame for this long: the face is no longer visible
FACE_DECAY_S = 0.25  # time constant of the face fields' decay once the face is lost
BASELINE_FIRST = 10  # the first analysed faces all enter the baseline (about 1 s at 10 fps)
BASELINE_EVERY_S = 0.5  # later, one sample per this often ...
BASELINE_KEEP = 60  # ... and the last this many (about 30 s), so the baseline adapts slowly
BASELINE_QUANTILE = 0.3  # expressions only move measures up: a low quantile is the resting face
NOD_WINDOW_S = 0.5

# measure -> feature: (dead zone, excursion that reads 1.0), in inter-ocular distances (mouth_open: a
# ratio). Calibrated on PortraitRenderer's astronaut: smile 0.5 -> ~0.5, jaw_open 0.7 -> ~0.5,
# brow_up 0.5 -> ~0.5; a nod of 0.1 rad (6 degrees) -> ~0.4, of 0.2 rad -> 1.
SMILE_SCALE = (0.01, 0.08)
MOUTH_SCALE = (0.02, 0.45)
BROW_SCALE = (0.01, 0.08)
NOD_SCALE = (0.02, 0.08)
SMILE_WIDTH_WEIGHT = 0.5  # corner lift counts fully, widening half: /i/ and /s/ widen without a smile

# iBUG 68-point indices
EYE_CORNERS = ((36, 39), (42, 45))
BROWS = slice(17, 27)
NOSE_TIP = 30
MOUTH_CORNERS = (48, 54)
LIP_CENTRE = (51, 57)  # outer upper and lower lip centres
INNER_CORNERS = (60, 64)
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper, lower inner-lip points


def _ramp(value: float, scale: tuple[float, float]) -> float:
    """Excursion above the dead zone, as a fraction of the full-scale excursion, in 0..1."""
    dead, full = scale
    return min(1.0, max(0.0, (value - dead) / full))


def face_measures(points: F64) -> tuple[F64, float, float]:
    """68 landmarks (68, 2) in pixels -> (expression measures (3,): smile, gap, brow; nose y px; IOD px)."""
    left = points[list(EYE_CORNERS[0])].mean(axis=0)  # (2,)
    right = points[list(EYE_CORNERS[1])].mean(axis=0)
    iod = float(np.linalg.norm(right - left))
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: the eyes coincide")
    ex = (right - left) / iod  # (2,) along the eye line
    ey = np.array([-ex[1], ex[0]])  # (2,) perpendicular, pointing down the face
    rel = points - 0.5 * (left + right)  # (68, 2)
    local = np.stack([rel @ ex, rel @ ey], axis=1) / iod  # (68, 2) in IODs, origin between the eyes

    width = local[MOUTH_CORNERS[1], 0] - local[MOUTH_CORNERS[0], 0]
    corners_y = local[list(MOUTH_CORNERS), 1].mean()
    lift = local[list(LIP_CENTRE), 1].mean() - corners_y  # > 0: corners above the lips' centre
    smile = SMILE_WIDTH_WEIGHT * width + lift

    inner_width = max(local[INNER_CORNERS[1], 0] - local[INNER_CORNERS[0], 0], 1e-3)
    gaps = [local[lower, 1] - local[upper, 1] for upper, lower in INNER_PAIRS]
    gap = max(0.0, float(np.mean(gaps))) / inner_width

    reference_y = 0.5 * local[NOSE_TIP, 1]  # halfway between the eye line (y = 0) and the nose tip
    brow = reference_y - local[BROWS, 1].mean()
    return np.array([smile, gap, brow], np.float64), float(points[NOSE_TIP, 1]), iod


def yin_f0(x: F64, sample_rate: int = SAMPLE_RATE) -> float:
    """F0 in Hz of a short frame (N,) by YIN's cumulative-mean-normalised difference; 0 when aperiodic."""
    x = x - x.mean()
    tau_min = int(sample_rate / F0_CEIL)
    tau_max = int(sample_rate / F0_FLOOR) + 1
    width = x.size - tau_max  # the difference function's integration window
    if width < tau_max // 2:
        return 0.0
    # d(tau) = sum_j (x[j] - x[j+tau])^2 = e(0) + e(tau) - 2 r(tau), with r by FFT.
    n = 1 << math.ceil(math.log2(x.size + width))
    corr = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(x[:width], n)), n)[: tau_max + 1]
    energy = np.concatenate([[0.0], np.cumsum(x * x)])  # (N+1,)
    lags = np.arange(tau_max + 1)
    diff = energy[width] + energy[lags + width] - energy[lags] - 2.0 * corr  # (tau_max+1,)
    diff[0] = 0.0
    cmnd = np.ones_like(diff)
    running = np.cumsum(diff[1:])
    cmnd[1:] = diff[1:] * lags[1:] / np.maximum(running, 1e-12)
    band = cmnd[tau_min : tau_max + 1]
    below = np.flatnonzero(band < YIN_THRESHOLD)
    if below.size == 0:
        return 0.0
    i = int(below[0])
    while i + 1 < band.size and band[i + 1] < band[i]:  # walk down to the dip's bottom
        i += 1
    tau = float(i + tau_min)
    k = i + tau_min
    if 1 <= k < tau_max:  # parabolic interpolation between lags
        a, b, c = cmnd[k - 1], cmnd[k], cmnd[k + 1]
        den = a - 2.0 * b + c
        if den > 0:
            tau += 0.5 * (a - c) / den
    return float(np.clip(sample_rate / tau, F0_FLOOR, F0_CEIL))


@functools.lru_cache(maxsize=2)
def _shape_predictor(path: str) -> Any:
    """dlib's shape predictor, loaded once per process (~100 MB, about a second to read).

    Shared by every instance: dlib documents that one shape_predictor may be used from several threads
    at once. The face detector keeps scratch state, so each instance makes its own.
    """
    import dlib

    return dlib.shape_predictor(path)


class ListeningFeatures:
    """Turns the user's audio (16 kHz) and video (RGB frames) into PartnerFrame records for the avatar's
    listening behaviour.
    """

    def __init__(self, video_fps: float = 10.0, landmarks_model: Path | None = None) -> None:
        if not video_fps > 0:
            raise ValueError(f"video_fps must be > 0, got {video_fps}")
        import dlib

        self.video_fps = float(video_fps)
        self._period = 1.0 / self.video_fps
        self._detector: Any = dlib.get_frontal_face_detector()
        path = landmarks_model if landmarks_model is not None else face_landmarks_model()
        self._predictor = _shape_predictor(str(path))
        self._dlib = dlib
        self._lock = threading.Lock()  # the state below
        self._video_lock = threading.Lock()  # dlib's detector and predictor, one frame at a time
        # Guarded by _video_lock: the face box last found (full-frame pixels), the crop that follows a
        # small face (centre x, centre y, zoom), and when the last wide search ran.
        self._track: tuple[float, float, float, float] | None = None
        self._crop: tuple[float, float, float] | None = None
        self._wide_search_t = -math.inf

        # Audio
        self._audio: F32 = np.zeros(F0_SAMPLES, np.float32)  # (960,) the latest samples, newest last
        self._since_hop = 0  # samples since the last update
        self._speaking = False
        self._audio_t = -math.inf  # time of the latest sample
        self._energy = 0.0
        self._f0 = 0.0

        # Video
        self._next_due = -math.inf
        self._last_video_t = -math.inf  # the latest analysed frame
        self._face_t = -math.inf  # the latest analysed frame with a face
        self._lost_t: float | None = None  # the first analysed frame without a face since then
        self._face = np.zeros(4, np.float64)  # smile, mouth_open, brow_raise, nod
        self._baseline: deque[F64] = deque(maxlen=BASELINE_KEEP)  # (3,) measures each
        self._baseline_seen = 0
        self._baseline_t = -math.inf
        self._nose: deque[tuple[float, float, float]] = deque()  # (t, nose y px, IOD px)

    # ---------------------------------------------------------------------------------------------
    # Audio
    # ---------------------------------------------------------------------------------------------

    def push_audio(self, samples: F32, t: float, speaking: bool) -> None:
        """Feed mono float32 audio (N,) at 16 kHz; ``t``: time of ``samples[0]``; ``speaking``: the VAD's."""
        if not isinstance(samples, np.ndarray) or samples.dtype != np.float32 or samples.ndim != 1:
            got = (
                f"{samples.dtype} {samples.shape}"
                if isinstance(samples, np.ndarray)
                else type(samples).__name__
            )
            raise ValueError(
                f"audio must be mono float32 (N,) at 16 kHz, got {got}; "
                "use np.asarray(x, np.float32).reshape(-1) (int16 PCM: divide by 32768)"
            )
        with self._lock:
            self._speaking = bool(speaking)
            n = samples.size
            if n == 0:
                return
            self._audio_t = t + (n - 1) / SAMPLE_RATE
            # Updates fall every HOP samples of the stream; only the last one inside this chunk matters,
            # since each reads only the audio before it.
            total = self._since_hop + n
            if total < HOP:
                self._shift_in(samples)
                self._since_hop = total
                return
            upto = n - total % HOP  # samples of this chunk up to the last update point
            self._shift_in(samples[:upto])
            self._update_audio()
            self._shift_in(samples[upto:])
            self._since_hop = total % HOP

    def _shift_in(self, samples: F32) -> None:
        n = samples.size
        if n >= F0_SAMPLES:
            self._audio[:] = samples[-F0_SAMPLES:]
        elif n:
            self._audio[:-n] = self._audio[n:]
            self._audio[-n:] = samples

    def _update_audio(self) -> None:
        frame = self._audio.astype(np.float64)  # (960,)
        self._energy = float(np.sqrt(np.mean(frame[-ENERGY_SAMPLES:] ** 2)))
        voiced = self._speaking and float(np.sqrt(np.mean(frame**2))) >= VOICED_MIN_RMS
        self._f0 = yin_f0(frame) if voiced else 0.0

    # ---------------------------------------------------------------------------------------------
    # Video
    # ---------------------------------------------------------------------------------------------

    def push_video(self, image: npt.NDArray[np.uint8], t: float) -> bool:
        """Analyse an RGB frame (H, W, 3) taken at ``t``, unless one was analysed less than 1/video_fps ago.

        Returns False when the frame was skipped. Blocking (dlib, ~10-20 ms): call it from a worker thread.
        """
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] != 3
        ):
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(
                f"video frames must be uint8 RGB (H, W, 3), got {got}; "
                "convert e.g. with cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) or frame[..., :3]"
            )
        with self._lock:
            if t < self._last_video_t - STALE_VIDEO_S:  # the clock went back: a new stream
                self._next_due = -math.inf
                self._last_video_t = self._face_t = -math.inf
                self._lost_t = None
                self._face[:] = 0.0
                self._nose.clear()
            # A quarter-period of slack keeps a camera at exactly video_fps from losing frames to jitter.
            if t < self._next_due - 0.25 * self._period:
                return False
            late = t - self._next_due >= self._period
            self._next_due = t + self._period if late else self._next_due + self._period
        with self._video_lock:
            points = self._landmarks(np.ascontiguousarray(image), t)
        with self._lock:
            if t < self._last_video_t:
                return True  # a concurrent call analysed a later frame first: this result is stale
            self._last_video_t = t
            if points is None:
                self._nose.clear()
                if self._lost_t is None:
                    self._lost_t = t
            else:
                self._update_face(points, t)
        return True

    def _landmarks(self, image: npt.NDArray[np.uint8], t: float) -> F64 | None:
        """The 68 landmarks (68, 2) of the largest face in full-resolution pixels, or None.

        The whole frame scaled to DETECT_WIDTH first: that misses faces under about 80 px there (a
        quarter of the frame's width: a user sitting back from a 640x480 camera). Those are followed in a
        crop around where the face was last, scaled so that the face is about TRACK_FACE_PX wide (tried
        first while a small face is being followed); a new one is looked for at WIDE_DETECT_WIDTH, at
        most once every WIDE_SEARCH_EVERY_S.
        """
        width = image.shape[1]
        lost = False
        if self._crop is not None and self._track is not None:  # a small face last time: look there first
            points = self._follow(image, self._track)
            if points is not None:
                return points
            self._track, self._crop, lost = None, None, True
        zoom = min(1.0, DETECT_WIDTH / width)
        box = self._detect(self._scaled(image, zoom), zoom, (0, 0))
        if box is not None:
            self._track, self._crop = box, None
            return self._predict(image, box)
        # A small face just lost (it moved, or the crop lost it) is looked for at once.
        due = lost or t - self._wide_search_t >= WIDE_SEARCH_EVERY_S
        if self._track is None and width > DETECT_WIDTH and due:
            self._wide_search_t = t
            wide = min(1.0, WIDE_DETECT_WIDTH / width)
            self._track, self._crop = self._detect(self._scaled(image, wide), wide, (0, 0)), None
        points = self._follow(image, self._track) if self._track is not None else None
        if points is None:
            self._track = self._crop = None
        return points

    def _follow(self, image: npt.NDArray[np.uint8], track: tuple[float, float, float, float]) -> F64 | None:
        """Landmarks (68, 2) of the face near the ``track`` box, found in a crop scaled to its size.

        The crop stays put while the face stays near its centre and keeps its size: dlib's box (and so
        the landmarks) shifts with the crop's alignment to the detector's 8 px cells, so a crop that
        followed every box would make a still face jitter. The landmarks come from the scaled crop,
        which gives small faces sub-pixel landmarks (the predictor returns whole pixels).
        """
        left, top, right, bottom = track
        size = max(right - left, bottom - top, 1.0)
        cx, cy = 0.5 * (left + right), 0.5 * (top + bottom)
        crop = self._crop
        if (
            crop is None
            or max(abs(cx - crop[0]), abs(cy - crop[1])) > CROP_SLACK * size
            or not 1 / 1.25 < size * crop[2] / TRACK_FACE_PX < 1.25
        ):
            crop = self._crop = (cx, cy, min(TRACK_MAX_ZOOM, TRACK_FACE_PX / size))
        height, width = image.shape[:2]
        half = 0.5 * TRACK_CROP * TRACK_FACE_PX / crop[2]
        x0, y0 = max(0, round(crop[0] - half)), max(0, round(crop[1] - half))
        x1, y1 = min(width, round(crop[0] + half)), min(height, round(crop[1] + half))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        zoom = crop[2]
        region = self._scaled(np.ascontiguousarray(image[y0:y1, x0:x1]), zoom)
        box = self._detect(region, zoom, (x0, y0))
        if box is None:
            return None
        self._track = box
        if zoom <= 1.0:
            return self._predict(image, box)
        local = tuple((v - o) * zoom for v, o in zip(box, (x0, y0, x0, y0), strict=True))
        points = self._predict(region, local)  # (68, 2) in the scaled crop
        return points / zoom + np.array([x0, y0], np.float64)

    @staticmethod
    def _scaled(image: npt.NDArray[np.uint8], zoom: float) -> npt.NDArray[np.uint8]:
        """``image`` (h, w, 3) resized by ``zoom`` (contiguous, as dlib wants)."""
        if zoom == 1.0:
            return image
        size = (max(1, round(image.shape[1] * zoom)), max(1, round(image.shape[0] * zoom)))
        interpolation = cv2.INTER_AREA if zoom < 1.0 else cv2.INTER_LINEAR
        return np.ascontiguousarray(cv2.resize(image, size, interpolation=interpolation), np.uint8)

    def _detect(
        self, scaled: npt.NDArray[np.uint8], zoom: float, origin: tuple[int, int]
    ) -> tuple[float, float, float, float] | None:
        """The largest face in a region scaled by ``zoom``, as (left, top, right, bottom) in full-frame
        pixels; ``origin`` is the region's top-left corner in the full frame."""
        boxes = self._detector(scaled, 0)  # upsample 0: each upsampling step costs 4x
        if len(boxes) == 0:
            return None
        best = max(boxes, key=lambda b: b.area())
        x0, y0 = origin
        return (
            x0 + best.left() / zoom,
            y0 + best.top() / zoom,
            x0 + best.right() / zoom,
            y0 + best.bottom() / zoom,
        )

    def _predict(self, image: npt.NDArray[np.uint8], box: tuple[float, ...]) -> F64:
        """The predictor's 68 landmarks (68, 2) for a (left, top, right, bottom) box in ``image``."""
        rect = self._dlib.rectangle(*(round(v) for v in box))
        shape = self._predictor(image, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)

    def _update_face(self, points: F64, t: float) -> None:
        try:
            measures, nose_y, iod = face_measures(points)
        except ValueError:  # degenerate landmarks: treat as no face
            self._nose.clear()
            if self._lost_t is None:
                self._lost_t = t
            return
        # Baseline: every face at first, then a slow trickle, so that it follows the person slowly.
        if self._baseline_seen < BASELINE_FIRST or t - self._baseline_t >= BASELINE_EVERY_S:
            self._baseline.append(measures)
            self._baseline_seen += 1
            self._baseline_t = t
        rest = np.quantile(np.stack(self._baseline), BASELINE_QUANTILE, axis=0)  # (3,)
        delta = measures - rest
        # Nod: the nose tip's largest drop (image y grows downward) within the window, in IODs.
        if self._nose and t - self._nose[-1][0] > NOD_WINDOW_S:
            self._nose.clear()  # a gap in the face track: start over
        self._nose.append((t, nose_y, iod))
        while self._nose[0][0] < t - NOD_WINDOW_S - 1e-9:
            self._nose.popleft()
        track = np.array(self._nose, np.float64)  # (K, 3)
        ys = track[:, 1] / track[:, 2].mean()
        drop = float(np.max(ys - np.minimum.accumulate(ys)))
        self._face = np.array(
            [
                _ramp(float(delta[0]), SMILE_SCALE),
                _ramp(float(delta[1]), MOUTH_SCALE),
                _ramp(float(delta[2]), BROW_SCALE),
                _ramp(drop, NOD_SCALE),
            ]
        )
        self._face_t = t
        self._lost_t = None

    # ---------------------------------------------------------------------------------------------
    # Output
    # ---------------------------------------------------------------------------------------------

    def frame(self, t: float) -> PartnerFrame:
        """The current perception at time ``t``."""
        with self._lock:
            fresh_audio = t - self._audio_t <= STALE_AUDIO_S
            energy = self._energy if fresh_audio else 0.0
            f0 = self._f0 if fresh_audio and self._speaking else 0.0
            # Visible while the latest analysed frame showed a face and is not stale; once lost (or
            # stale), the face fields fade out rather than snap to 0.
            visible = self._lost_t is None and t - self._face_t <= STALE_VIDEO_S
            face = self._face
            if not visible:
                fade_from = self._lost_t if self._lost_t is not None else self._face_t + STALE_VIDEO_S
                face = face * math.exp(-max(0.0, t - fade_from) / FACE_DECAY_S)
            return PartnerFrame(
                t=t,
                speaking=self._speaking,
                f0_hz=f0,
                energy=energy,
                face_visible=visible,
                smile=float(face[0]),
                mouth_open=float(face[1]),
                nod=float(face[3]),
                brow_raise=float(face[2]),
            )
