"""Face landmarks of a video -> motion frames: the renderers' mapping run backwards, for real recordings.

**Landmarks.** dlib's HOG face detector (on the frame scaled to at most ``DETECT_WIDTH`` px, upsampled
once when nothing is found) and its 68-point predictor on the full-resolution frame; the largest face is
the person. The iris is found in the image: the darkness-weighted centroid inside each eye's landmarks.

**Head pose and the frontal face.** ``cv2.solvePnP`` fits the landmarks that expressions do not move (eye
corners and nose, ``RIGID``) to a generic 3D face (``FACE_3D``, millimetres, written here from average
adult proportions) seen by a pinhole camera of focal length max(width, height) px. The pose is lightly
smoothed over time (``POSE_SMOOTH_S``; the distance more, ``DISTANCE_SMOOTH_S``). Every landmark is then
*frontalised*: its camera ray meets the plane at its generic depth in the head's frame, which places it
in the generic face's frontal coordinates, the head's rotation, distance and position undone. Expression
measures are distances there, each against a nearby rigid reference (chin and lips against the nose
base, brows and lids against the eye corners), so that what noise the pose leaves scales short
distances only.

**Neutral baseline.** A measure is read against the person's neutral value over the whole video: a low
quantile where expressions move it one way only from rest (the chin's drop, the lip gap, the corners'
lift), the median where rest is the typical value (brows, lips, mouth width, lids, gaze, head pose).

**Scales.** A field's value is what the portrait renderer draws (:mod:`avatar_core.render.portrait`):
``jaw_open`` 1 drops the chin by 0.13 face heights (about 25 mm), a smile lifts its corner by 0.04, a
brow rises 0.045, and so on, the face height ``S`` being 1.6 x the rest distance from the eye line to the
chin, as in the renderer. A measure's excursion from neutral is divided by the excursion that reads 1 and
clipped into the field's range; the fields that landmark jitter reaches most get a small dead zone
(``DEAD_ZONE``). Fields that share landmarks are separated: the corners' drop with the jaw is removed
before the smile is read, the lower lip is read against the chin, the width a smile adds is removed
before ``mouth_wide``/``mouth_round``. ``lips_pressed`` is lip contact: the inner lips' gap near its
closed level reads 1 (lips that touch at rest read 1 too: they are sealed; the teacher's 0.3 at rest is
its own convention).

**Eyes.** ``blink_l``/``blink_r``: the upper half of the eye aspect ratio, the upper lid's drop towards
the eye-corner line over the open eye's height, so that a squint's rising lower lid is not a blink;
dlib's lids never quite meet, so a drop of ``BLINK_FULL`` reads 1. ``squint``: the lower lids' rise.
``gaze_x``: the iris' horizontal offset in the eye (0.2 eye widths, about 30 degrees, reads 1), where
the eye is at least ``MIN_IRIS_EYE_PX`` wide; ``gaze_y`` stays 0: the lids cover the iris' top and bottom
and follow vertical gaze, so the dark centroid's height tells more about the lids than about the eye.

**Head fields.** Yaw and pitch are read off the face's forward axis, roll off its x axis, all against
their medians (the camera need not face the person squarely); ``head_x``/``head_y``: the projected face
origin's shift in face heights; ``head_z`` from the PnP distance (the renderer's scale is
``1 + 0.5 head_z``). The portrait renderer turns a head with less parallax than a real one: on its own
landmarks, a rendered yaw or pitch reads back at about a quarter of its value.

Letters in shape comments: F video frames, D = MOTION_DIM.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from avatar_core import motion as mo
from avatar_core.bundled import face_landmarks_model

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Image = npt.NDArray[np.uint8]

DETECT_WIDTH = 480  # frames wider than this are scaled down for the face detector
MAX_ANALYSIS_FPS = 30.0  # faster videos are analysed at this rate (frames in between are skipped)
POSE_SMOOTH_S = 0.03  # Gaussian sigma of the head's rotation and position
DISTANCE_SMOOTH_S = 0.15  # and of its distance from the camera
MIN_IRIS_EYE_PX = 14.0  # narrower eyes give no gaze

# Scales: the excursion that reads 1.0, in face heights S (``*_S``) or as noted, after the renderer.
JAW_S = 0.13  # chin drop
SMILE_S = 0.04  # corner lift
SMILE_WIDEN_S = 0.03  # how far a full smile pulls its corner sideways
JAW_CORNER_DROP = 0.45  # a mouth corner drops this fraction of the chin's drop
JAW_NARROW = 0.08  # the mouth narrows by this fraction of its width at jaw_open 1
WIDE_RATIO = 0.2  # mouth_wide 1 widens the mouth by 20 %
ROUND_RATIO = 0.3  # mouth_round 1 narrows it by 30 %
UPPER_LIP_S = 0.04
LOWER_LIP_S = 0.045
BROW_UP_S = 0.045
BROW_DOWN_S = 0.03
CONTACT_S = 0.02  # inner-lip gap above its closed level at which the lips no longer touch
DEAD_ZONE = 0.12  # excursions below this read 0 on the fields that landmark jitter reaches most
BLINK_FULL = 0.75  # upper-lid drop, in open-eye heights, that reads as a closed eye
SQUINT_RATIO = 0.25  # lower lid rise, in eye heights, of squint 1
GAZE_RATIO = 0.2  # iris offset, in eye widths, of gaze 1
FACE_HEIGHT_PER_CHIN = 1.6  # face height (hairline to chin) over the eye-line-to-chin distance

# A generic adult face in millimetres, written here from average adult proportions (inter-ocular
# distance about 61 mm, eye line to chin 115 mm): x to the viewer's right, y down, z away from the camera
# (the nose points to -z); origin between the eyes on the inner eye corners' plane. Head pose is solved on
# the points that expressions do not move (``RIGID``: eye corners and nose); the depths of the others
# place them when the face is frontalised.
RIGID = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
_HALF_FACE = {  # index: (x, y, z) for the viewer's left half and the midline; the right half mirrors it
    0: (-70, 5, 68), 1: (-69, 25, 62), 2: (-66, 44, 55), 3: (-62, 62, 45), 4: (-55, 79, 32),
    5: (-45, 93, 20), 6: (-32, 104, 6), 7: (-17, 112, -4), 8: (0, 115, -8),
    17: (-55, -20, 18), 18: (-45, -27, 6), 19: (-33, -29, -2), 20: (-21, -27, -6), 21: (-9, -23, -8),
    27: (0, -4, -8), 28: (0, 8, -13), 29: (0, 19, -19), 30: (0, 31, -28), 31: (-14, 38, -4),
    32: (-7, 41, -10), 33: (0, 42, -13),
    36: (-45, 2, 14), 37: (-37, -4, 3), 38: (-25, -4, -1), 39: (-16, 1, 0), 40: (-25, 5, 0), 41: (-37, 5, 3),
    48: (-25, 70, 8), 49: (-16, 64, -8), 50: (-7, 61, -15), 51: (0, 62, -18), 57: (0, 81, -15),
    58: (-8, 80, -12), 59: (-16, 77, -6), 60: (-21, 70, 6), 61: (-7, 68, -12), 62: (0, 68, -14),
    66: (0, 71, -13), 67: (-7, 71, -11),
}  # fmt: skip
_MIRROR = {
    **{k: 16 - k for k in range(9)}, **{k: 43 - k for k in range(17, 22)}, 31: 35, 32: 34,
    36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46, 48: 54, 49: 53, 50: 52, 58: 56, 59: 55,
    60: 64, 61: 63, 67: 65,
}  # fmt: skip


def _generic_face() -> F64:
    face = np.zeros((68, 3), np.float64)
    for index, xyz in _HALF_FACE.items():
        face[index] = xyz
        if index in _MIRROR:
            face[_MIRROR[index]] = (-xyz[0], xyz[1], xyz[2])
    return face


FACE_3D: F64 = _generic_face()  # (68, 3)

# iBUG 68-point indices
EYES = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))  # viewer's left (subject's right), right
CORNERS = ((36, 39), (42, 45))
UPPER_LID = ((37, 38), (43, 44))
LOWER_LID = ((41, 40), (47, 46))
BROWS = ((17, 18, 19, 20, 21), (22, 23, 24, 25, 26))
CHIN = (7, 8, 9)
NOSE_BASE = 33
INNER_UPPER, INNER_LOWER = (61, 62, 63), (67, 66, 65)
OUTER_UPPER = (50, 51, 52)
MOUTH_CORNERS = (48, 54)  # viewer's left, right


class FaceError(ValueError):
    """A video in which no usable face was found; the message says why."""


@dataclass(frozen=True)
class FaceTrack:
    """Landmarks of the analysed frames of one video."""

    times: F64  # (F,) seconds
    points: F64  # (F, 68, 2) pixels; NaN where no face was found
    iris: F64  # (F, 2) horizontal iris offset per eye, in eye widths; NaN where not measured
    width: int
    height: int

    @property
    def found(self) -> npt.NDArray[np.bool_]:
        """(F,) frames with a face."""
        return np.isfinite(self.points[:, 0, 0])


# -------------------------------------------------------------------------------------------------
# Landmarks
# -------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _predictor(path: str) -> Any:
    import dlib

    return dlib.shape_predictor(path)


class LandmarkReader:
    """dlib face detection + 68 landmarks + iris offsets for one RGB frame at a time."""

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = _predictor(str(face_landmarks_model()))

    def __call__(self, image: Image) -> tuple[F64, F64] | None:
        """(68, 2) landmarks and (2,) iris offsets (NaN where not measurable) of the largest face."""
        height, width = image.shape[:2]
        zoom = min(1.0, DETECT_WIDTH / width)
        small = image
        if zoom < 1.0:
            size = (max(1, round(width * zoom)), max(1, round(height * zoom)))
            small = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        small = np.ascontiguousarray(small)
        boxes = self._detector(small, 0)
        if len(boxes) == 0:
            boxes = self._detector(small, 1)  # faces of 40-80 px need one upsampling
        if len(boxes) == 0:
            return None
        best = max(boxes, key=lambda b: b.area())
        rect = self._dlib.rectangle(
            round(best.left() / zoom),
            round(best.top() / zoom),
            round(best.right() / zoom),
            round(best.bottom() / zoom),
        )
        shape = self._predictor(np.ascontiguousarray(image), rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], np.float64)  # (68, 2)
        grey = np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), np.uint8)
        iris = np.array([_iris_offset(grey, points, eye) for eye in range(2)], np.float64)
        return points, iris


def _iris_offset(grey: npt.NDArray[np.uint8], points: F64, eye: int) -> float:
    """The iris' horizontal offset from the eye's centre, in eye widths (+ = viewer's right); NaN when
    the eye is too small or too closed to tell."""
    rim = points[list(EYES[eye])]  # (6, 2)
    a, b = points[CORNERS[eye][0]], points[CORNERS[eye][1]]
    eye_width = float(np.linalg.norm(b - a))
    opening = float(np.mean(points[list(LOWER_LID[eye]), 1] - points[list(UPPER_LID[eye]), 1]))
    if eye_width < MIN_IRIS_EYE_PX or opening < 0.15 * eye_width:
        return math.nan
    x0, y0 = np.floor(rim.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(rim.max(axis=0)).astype(int) + 2
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(grey.shape[1], x1), min(grey.shape[0], y1)
    if x1 - x0 < 4 or y1 - y0 < 3:
        return math.nan
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillConvexPoly(mask, np.round(rim - (x0, y0)).astype(np.int32), 1)
    luma = grey[y0:y1, x0:x1].astype(np.float64)
    inside = mask > 0
    if int(inside.sum()) < 8:
        return math.nan
    values = luma[inside]
    # The iris and pupil are the darkest third of the eye's opening; weight each pixel by how dark it is.
    threshold = float(np.percentile(values, 35))
    weight = np.where(inside, np.maximum(threshold - luma, 0.0), 0.0)
    total = float(weight.sum())
    if total <= 0.0:
        return math.nan
    ys, xs = np.mgrid[y0:y1, x0:x1]
    centroid = np.array([float((weight * xs).sum()), float((weight * ys).sum())]) / total
    axis = (b - a) / eye_width  # both eyes' corners are listed left to right
    return float((centroid - 0.5 * (a + b)) @ axis) / eye_width


def track_faces(
    frames: Iterable[tuple[float, Image]],
    max_fps: float = MAX_ANALYSIS_FPS,
    give_up_s: float | None = None,
) -> FaceTrack:
    """Landmarks of ``(time, RGB frame)`` pairs, at most ``max_fps`` frames per second; with
    ``give_up_s``, reading stops once that many seconds have passed without any face."""
    reader = LandmarkReader()
    times: list[float] = []
    points: list[F64] = []
    iris: list[F64] = []
    size = (0, 0)
    next_due = -math.inf
    period = 1.0 / max_fps
    seen = False
    for t, image in frames:
        if give_up_s is not None and t > give_up_s and not seen:
            break
        if t < next_due - 0.25 * period:
            continue
        next_due = max(t, next_due + period) if math.isfinite(next_due) else t + period
        size = (int(image.shape[1]), int(image.shape[0]))
        found = reader(image)
        seen = seen or found is not None
        times.append(float(t))
        if found is None:
            points.append(np.full((68, 2), np.nan))
            iris.append(np.full(2, np.nan))
        else:
            points.append(found[0])
            iris.append(found[1])
    return FaceTrack(
        np.array(times, np.float64),
        np.array(points, np.float64).reshape(-1, 68, 2),
        np.array(iris, np.float64).reshape(-1, 2),
        size[0],
        size[1],
    )


# -------------------------------------------------------------------------------------------------
# Measures
# -------------------------------------------------------------------------------------------------


def _smooth_1d(values: F64, sigma_frames: float) -> F64:
    """Gaussian smoothing of a (F,) series whose NaNs are filled by interpolation first."""
    return mo.gaussian_smooth(_interpolate_nans(values), sigma_frames)


def _interpolate_nans(values: F64) -> F64:
    ok = np.isfinite(values)
    if ok.all() or not ok.any():
        return np.nan_to_num(values.astype(np.float64), nan=0.0)
    index = np.arange(values.size)
    return np.interp(index, index[ok], values[ok])


def _median3(values: F64) -> F64:
    """A 3-frame running median (kills single-frame landmark glitches), edges kept."""
    if values.size < 3:
        return values
    stacked = np.stack([values[:-2], values[1:-1], values[2:]])
    out = values.copy()
    out[1:-1] = np.median(stacked, axis=0)
    return out


def _camera(track: FaceTrack) -> F64:
    focal = float(max(track.width, track.height))
    return np.array([[focal, 0, track.width / 2], [0, focal, track.height / 2], [0, 0, 1]], np.float64)


def head_poses(track: FaceTrack) -> tuple[F64, F64]:
    """Per frame the rotation vector (F, 3) and translation (F, 3) (model millimetres) of the generic
    face; NaN rows where no face was found or PnP failed."""
    camera = _camera(track)
    rvecs = np.full((len(track.times), 3), np.nan)
    tvecs = np.full((len(track.times), 3), np.nan)
    model = np.ascontiguousarray(FACE_3D[list(RIGID)])  # (13, 3)
    guess: tuple[F64, F64] | None = None  # the previous frame's pose starts the next solve
    for f in np.flatnonzero(track.found):
        image_points = np.ascontiguousarray(track.points[f, list(RIGID)], np.float64)  # (13, 2)
        if guess is None:
            ok, r0, t0 = cv2.solvePnP(model, image_points, camera, None, flags=cv2.SOLVEPNP_EPNP)
            if not ok:
                continue
            guess = (np.asarray(r0, np.float64), np.asarray(t0, np.float64))
        ok, r, t = cv2.solvePnP(
            model, image_points, camera, None, guess[0].copy(), guess[1].copy(),
            useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
        )  # fmt: skip
        rotation, translation = np.asarray(r, np.float64), np.asarray(t, np.float64)
        if not ok or not np.isfinite(rotation).all() or float(translation[2, 0]) <= 0:
            guess = None
            continue
        guess = (rotation, translation)
        rvecs[f], tvecs[f] = rotation[:, 0], translation[:, 0]
    return rvecs, tvecs


def _angles(rotation: F64) -> tuple[float, float, float]:
    """Yaw, pitch, roll (the motion conventions) of a model-to-camera rotation."""
    forward = rotation @ np.array([0.0, 0.0, -1.0])  # out of the face, toward the camera
    across = rotation @ np.array([1.0, 0.0, 0.0])  # the face's x axis
    yaw = math.atan2(forward[0], -forward[2])  # + = turned to the viewer's right
    pitch = math.atan2(forward[1], math.hypot(forward[0], forward[2]))  # + = chin down
    roll = math.atan2(across[1], across[0])  # + = clockwise in the image
    return yaw, pitch, roll


def frontalise(points: F64, rvecs: F64, tvecs: F64, camera: F64) -> F64:
    """Landmarks (F, 68, 2) in pixels -> (F, 68, 2) in the generic face's frontal plane (millimetres):
    each landmark's camera ray meets the plane at its generic depth (``FACE_3D``'s z) under the frame's
    head pose, which undoes the head's rotation, distance and position."""
    out = np.full(points.shape, np.nan)
    focal, cx, cy = camera[0, 0], camera[0, 2], camera[1, 2]
    depth = FACE_3D[:, 2]  # (68,)
    for f in np.flatnonzero(np.isfinite(rvecs[:, 0]) & np.isfinite(points[:, 0, 0])):
        rotation, _ = cv2.Rodrigues(rvecs[f])
        r1, r2, r3 = rotation[:, 0], rotation[:, 1], rotation[:, 2]
        a = (points[f, :, 0] - cx) / focal  # (68,)
        b = (points[f, :, 1] - cy) / focal
        base = depth[:, None] * r3[None, :] + tvecs[f][None, :]  # (68, 3): the point with X = Y = 0
        # C = X r1 + Y r2 + base must satisfy C_x = a C_z and C_y = b C_z: two equations in X, Y.
        m11, m12 = r1[0] - a * r1[2], r2[0] - a * r2[2]
        m21, m22 = r1[1] - b * r1[2], r2[1] - b * r2[2]
        v1 = a * base[:, 2] - base[:, 0]
        v2 = b * base[:, 2] - base[:, 1]
        det = m11 * m22 - m12 * m21
        det = np.where(np.abs(det) > 1e-9, det, np.nan)  # a ray along the plane: no point
        out[f, :, 0] = (v1 * m22 - m12 * v2) / det
        out[f, :, 1] = (m11 * v2 - m21 * v1) / det
    return out


@dataclass(frozen=True)
class FaceMeasures:
    """Per-frame measures (F,) each (millimetres of the generic face, radians, pixels), and the face
    height read off the whole video."""

    values: dict[str, F64]
    face_height: float  # S, generic millimetres
    face_height_px: float  # S, in pixels (at the median distance)


def _smooth_pose(rvecs: F64, tvecs: F64, fps: float) -> tuple[F64, F64]:
    """Pose tracks with single-frame glitches removed and landmark jitter smoothed: the head turns
    slowly next to the lips, and its distance more slowly still."""
    out_r = np.stack([_smooth_1d(_median3(rvecs[:, k]), POSE_SMOOTH_S * fps) for k in range(3)], axis=1)
    sigmas = (POSE_SMOOTH_S, POSE_SMOOTH_S, DISTANCE_SMOOTH_S)
    out_t = np.stack([_smooth_1d(_median3(tvecs[:, k]), sigmas[k] * fps) for k in range(3)], axis=1)
    missing = ~np.isfinite(rvecs[:, 0])
    out_r[missing] = np.nan
    out_t[missing] = np.nan
    return out_r, out_t


def measure(track: FaceTrack) -> FaceMeasures:
    """The raw face measures of every analysed frame (NaN where no face), in millimetres of the
    generic face, from the frontalised landmarks."""
    if not track.found.any():
        raise FaceError("no face found in any frame")
    fps = _frame_rate(track.times)
    rvecs, tvecs = _smooth_pose(*head_poses(track), fps)
    found = np.isfinite(rvecs[:, 0])
    if not found.any():
        raise FaceError("the head pose could not be solved in any frame")
    front = frontalise(track.points, rvecs, tvecs, _camera(track))  # (F, 68, 2)
    x, y = front[:, :, 0], front[:, :, 1]

    eye_y = [y[:, list(CORNERS[e])].mean(axis=1) for e in range(2)]  # (F,) per eye
    eye_line = 0.5 * (eye_y[0] + eye_y[1])
    chin = y[:, list(CHIN)].mean(axis=1)
    face_height = FACE_HEIGHT_PER_CHIN * float(np.nanquantile(chin - eye_line, 0.05))
    if not face_height > 0:
        raise FaceError("the landmarks are degenerate (chin above the eyes)")
    nose = y[:, NOSE_BASE]
    values: dict[str, F64] = {
        "chin": chin - nose,
        "gap": np.maximum(0.0, (y[:, list(INNER_LOWER)] - y[:, list(INNER_UPPER)]).mean(axis=1)),
        "lower_lip": y[:, list(INNER_LOWER)].mean(axis=1) - chin,
        "upper_lip": y[:, list(OUTER_UPPER)].mean(axis=1) - nose,
        "width": x[:, MOUTH_CORNERS[1]] - x[:, MOUTH_CORNERS[0]],
        "corner_l": nose - y[:, MOUTH_CORNERS[1]],  # lift of the viewer's-right corner (smile_l)
        "corner_r": nose - y[:, MOUTH_CORNERS[0]],
        "brow_l": eye_y[1] - y[:, list(BROWS[1])].mean(axis=1),  # height above the eye corners
        "brow_r": eye_y[0] - y[:, list(BROWS[0])].mean(axis=1),
    }
    for e, name in ((1, "l"), (0, "r")):
        lids = (y[:, list(LOWER_LID[e])] - y[:, list(UPPER_LID[e])]).mean(axis=1)
        values[f"lower_lid_{name}"] = y[:, list(LOWER_LID[e])].mean(axis=1) - eye_y[e]
        values[f"upper_lid_{name}"] = eye_y[e] - y[:, list(UPPER_LID[e])].mean(axis=1)
        values[f"eye_height_{name}"] = lids
    iris = track.iris
    counted = np.isfinite(iris).sum(axis=1)
    values["iris"] = np.where(counted > 0, np.nansum(iris, axis=1) / np.maximum(counted, 1), np.nan)
    angles = np.full((len(found), 3), np.nan)
    for f in np.flatnonzero(found):
        angles[f] = _angles(cv2.Rodrigues(rvecs[f])[0])
    values["yaw"], values["pitch"], values["roll"] = angles.T
    camera = _camera(track)
    values["origin_x"] = camera[0, 2] + camera[0, 0] * tvecs[:, 0] / tvecs[:, 2]  # pixels
    values["origin_y"] = camera[1, 2] + camera[1, 1] * tvecs[:, 1] / tvecs[:, 2]
    values["distance"] = tvecs[:, 2]
    for key, series in values.items():
        values[key] = np.where(found, series, np.nan)
    face_height_px = face_height * camera[0, 0] / float(np.nanmedian(tvecs[:, 2]))
    return FaceMeasures(values, face_height, face_height_px)


def _frame_rate(times: F64) -> float:
    if times.size < 2:
        return 25.0
    step = float(np.median(np.diff(times)))
    return 1.0 / step if step > 0 else 25.0


# -------------------------------------------------------------------------------------------------
# Measures -> motion
# -------------------------------------------------------------------------------------------------


def _q(series: F64, quantile: float) -> float:
    finite = series[np.isfinite(series)]
    return float(np.quantile(finite, quantile)) if finite.size else 0.0


def motion_from_track(track: FaceTrack) -> tuple[F32, npt.NDArray[np.bool_]]:
    """(F, D) motion frames at the track's frames (NaN-free; frames without a face are interpolated)
    and (F,) which frames had a face."""
    m = measure(track)
    # A 3-frame median removes single-frame landmark glitches, except where a real event can last a
    # single frame at 25 fps: a lip closure, a blink.
    brief = {"gap", "upper_lid_l", "upper_lid_r"}
    v = {
        k: _interpolate_nans(s) if k in brief else _median3(_interpolate_nans(s)) for k, s in m.values.items()
    }
    s = m.face_height
    out = np.zeros((len(track.times), mo.MOTION_DIM), np.float64)

    def put(name: str, value: F64) -> None:
        out[:, mo.INDEX[name]] = value

    jaw = (v["chin"] - _q(v["chin"], 0.05)) / (JAW_S * s)
    put("jaw_open", jaw)
    chin_drop = np.maximum(jaw, 0.0) * JAW_S * s  # millimetres

    smiles = []
    for side in ("l", "r"):
        lift = v[f"corner_{side}"] + JAW_CORNER_DROP * chin_drop
        smile = _dead((lift - _q(lift, 0.2)) / (SMILE_S * s), DEAD_ZONE)
        put(f"smile_{side}", smile)
        smiles.append(np.clip(smile, 0.0, 1.0))

    width0 = _neutral_width(v["width"], jaw)
    change = v["width"] / width0 - 1.0 + JAW_NARROW * np.clip(jaw, 0.0, 1.0)
    change -= SMILE_WIDEN_S * s * (smiles[0] + smiles[1]) / width0
    put("mouth_wide", np.maximum(change, 0.0) / WIDE_RATIO)
    put("mouth_round", np.maximum(-change, 0.0) / ROUND_RATIO)

    # Lips that touch are sealed; at rest they touch too (the teacher's 0.3 is a convention of its own).
    closed = min(_q(v["gap"], 0.05), CONTACT_S * s)  # a person who never closes the lips still has a gap
    contact = np.clip(1.0 - (v["gap"] - closed) / (CONTACT_S * s), 0.0, 1.0)
    put("lips_pressed", contact)

    apart = contact < 0.5  # pressing lips drags the upper lip down: its rest is read where they part
    upper_rest = _q(v["upper_lip"][apart], 0.5) if apart.sum() >= 10 else _q(v["upper_lip"], 0.5)
    put("upper_lip_up", _dead((upper_rest - v["upper_lip"]) / (UPPER_LIP_S * s), DEAD_ZONE))
    put("lower_lip_down", (v["lower_lip"] - _q(v["lower_lip"], 0.5)) / (LOWER_LIP_S * s))

    brow_change = []
    for side in ("l", "r"):
        rise = v[f"brow_{side}"] - _q(v[f"brow_{side}"], 0.5)
        put(f"brow_up_{side}", _dead(rise / (BROW_UP_S * s), DEAD_ZONE))
        brow_change.append(rise)
    put("brow_down", _dead(-(brow_change[0] + brow_change[1]) / 2.0 / (BROW_DOWN_S * s), DEAD_ZONE))

    for side in ("l", "r"):
        # The upper half of the eye aspect ratio: the upper lid's drop over the open eye's height (lid
        # to lid), so a squint's rising lower lid does not read as a blink. No median filter: a blink
        # lasts only a few frames.
        lid = v[f"upper_lid_{side}"]
        opening = max(_q(v[f"eye_height_{side}"], 0.5), 1e-6)
        put(f"blink_{side}", (_q(lid, 0.5) - lid) / opening / BLINK_FULL)
    rise = np.mean([_q(v[f"lower_lid_{e}"], 0.5) - v[f"lower_lid_{e}"] for e in ("l", "r")], axis=0)
    eye_height = float(np.mean([_q(v[f"eye_height_{e}"], 0.5) for e in ("l", "r")]))
    put("squint", _dead(rise / (SQUINT_RATIO * max(eye_height, 1e-3)), 2 * DEAD_ZONE))

    iris = v["iris"]
    if np.isfinite(m.values["iris"]).mean() > 0.5:
        put("gaze_x", _dead((iris - _q(iris, 0.5)) / GAZE_RATIO, DEAD_ZONE))

    for name, key in (("head_yaw", "yaw"), ("head_pitch", "pitch"), ("head_roll", "roll")):
        put(name, v[key] - _q(v[key], 0.5))
    put("head_x", (v["origin_x"] - _q(v["origin_x"], 0.5)) / m.face_height_px)
    put("head_y", (v["origin_y"] - _q(v["origin_y"], 0.5)) / m.face_height_px)
    put("head_z", 2.0 * (_q(v["distance"], 0.5) / np.maximum(v["distance"], 1e-6) - 1.0))
    return mo.clip(np.nan_to_num(out, nan=0.0).astype(np.float32)), track.found


def _dead(value: F64, zone: float) -> F64:
    """Values within ``zone`` of 0 read 0 (landmark jitter), the rest shifted so that 1 stays 1."""
    return np.sign(value) * np.maximum(np.abs(value) - zone, 0.0) / (1.0 - zone)


def _neutral_width(width: F64, jaw: F64) -> float:
    """The mouth's width at rest: the median over frames with the jaw nearly closed, if there are
    enough of them, else over all frames."""
    closed = np.isfinite(width) & (jaw < 0.1)
    if closed.sum() >= 10:
        return max(float(np.median(width[closed])), 1e-3)
    return max(_q(width, 0.5), 1e-3)
