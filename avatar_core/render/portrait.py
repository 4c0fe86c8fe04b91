"""Portrait renderer: animate one frontal photo with a landmark-driven triangle mesh.

Built once (``__init__``): dlib finds the face and its 68 landmarks; the photo is cropped and scaled to a
head-and-shoulders frame; a rig is assembled from a triangle mesh over the landmarks plus extra vertices
(eyelid creases and lash lines, cheeks, forehead, a head outline, the neck, a fixed collar row and outer
ring), a head mask (a generous outline trimmed to head, hair and neck by GrabCut) and a background plate
where the head is filled in from its surroundings.

Per frame: the motion moves the vertices (a linear blendshape basis for most fields, then the non-linear
ones: lips sealing, blinks, lips never crossing), the head pose is applied, and one backward map is built
by rasterising the deformed mesh (every pixel takes its triangle's affine map back to the rest photo) at
half resolution and upsampling it. ``cv2.remap`` warps the photo and the head mask with it; the warped
head is blended over the plate, and a mouth interior (cavity, teeth, tongue) is painted inside the lips.

Eyelids close by occlusion, not by squashing the eye: the eye's inside is mapped with the lids open,
and the upper lid (its lash line moved down whole, the skin above stretched) is drawn over it. A photo
with parted lips gets its teeth filled over with lip colour as the lips close.

Coordinates are output pixels (x right, y down). "Local" coordinates are the rest face's frame: origin
at the face centre, x along the eye line toward the viewer's right, y perpendicular to it, down.

Letters in shape comments: N rig vertices, M triangles, K linear motion bases, h/w a region's size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from avatar_core import motion as mo
from avatar_core.bundled import face_landmarks_model
from avatar_core.render.base import Image, Points

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]

MIN_FACE_PX = 80
FIX = f"use a frontal photo with exactly one face at least {MIN_FACE_PX} px wide"
FACE_FRACTION = 0.45  # face height (hairline to chin) over frame height
STRONG_FACE_SCORE = 0.35  # dlib detections below this count as a face only when nothing else is found

# Rig vertex layout: the 68 iBUG landmarks first, then the extra vertices.
IRIS = (68, 69)  # centre of the viewer's-left eye (36-41), of the viewer's-right eye (42-47)
CREASE = (np.arange(70, 74), np.arange(74, 78))  # above lid points 36-39 and 42-45
LASH = (np.arange(78, 80), np.arange(80, 82))  # just above the lashes of lid points 37-38 and 43-44
CHEEK = (82, 83)  # beside the nostrils, viewer's left then right
JOWL = (84, 85)  # between mouth corners and jaw
FOREHEAD = np.arange(86, 97)  # 6 just above the brows, 5 near the hairline
RING_START = 97
RING_POINTS = 21  # the head outline arc, moves with the head
JAW_SIDE = (RING_START + RING_POINTS, RING_START + RING_POINTS + 1)  # outside the jaw's corners
NECK_TOP = (JAW_SIDE[0] + 2, JAW_SIDE[0] + 3)
NECK_MID = (NECK_TOP[0] + 2, NECK_TOP[0] + 3)
COLLAR_OFFSETS = (-1.45, -0.95, -0.45, 0.0, 0.45, 0.95, 1.45)  # across the body, in jaw widths
COLLAR = tuple(range(NECK_TOP[0] + 4, NECK_TOP[0] + 4 + len(COLLAR_OFFSETS)))  # fixed, see below
OUTER_START = COLLAR[-1] + 1
OUTER_POINTS = 24  # fixed ring around everything
N_VERTICES = OUTER_START + OUTER_POINTS

EYES = (np.arange(36, 42), np.arange(42, 48))
UPPER_LID = ((37, 38), (43, 44))
LOWER_LID = ((41, 40), (47, 46))  # the lower-lid partner of each upper-lid point
INNER_UPPER = np.array([61, 62, 63])
INNER_LOWER = np.array([67, 66, 65])  # partner of each INNER_UPPER point
OUTER_UPPER = np.array([50, 51, 52])
OUTER_LOWER = np.array([58, 57, 56])
UPPER_CHAIN = np.array([60, 61, 62, 63, 64])
LOWER_CHAIN = np.array([60, 67, 66, 65, 64])

# Motion fields that move vertices linearly, in basis order; lower_lip_down is split by sign.
LINEAR = (
    "jaw_open",
    "mouth_wide",
    "mouth_round",
    "upper_lip_up",
    "lower_lip_drop",
    "lower_lip_tuck",
    "smile_l",
    "smile_r",
    "brow_up_l",
    "brow_up_r",
    "brow_down",
    "squint",
    "gaze_x",
    "gaze_y",
)


class PortraitError(ValueError):
    """The photo cannot drive a portrait: unreadable, or not exactly one large enough face."""


class _Maps(NamedTuple):
    """The frame's backward map over the warped region, in OpenCV's fixed-point form."""

    x0: int
    y0: int
    fixed_x: npt.NDArray[np.int16]  # (h, w, 2)
    fixed_y: npt.NDArray[np.uint16]  # (h, w)


class _Pose(NamedTuple):
    """One frame's rig in output pixels: the vertices (N, 2) three ways, and the head's rotation."""

    open: F32  # eyes open: the eyes' insides are mapped with these, so a closing lid covers them
    blink: F32  # lids where the motion puts them: the landmarks
    lid: F32  # as blink, lids reaching a little past the lower lids: the rest of the mesh
    angle: float  # the face's x axis in the image, radians
    scale: float


def _load(photo: Path | str | npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The photo as a contiguous (H, W, 3) uint8 RGB array."""
    if isinstance(photo, (str, Path)):
        path = Path(photo)
        if not path.is_file():
            raise PortraitError(f"portrait photo not found: {path}; check the path, and {FIX}")
        data = np.fromfile(path, np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if bgr is None:
            raise PortraitError(f"cannot read {path} as an image (use a JPEG or PNG file); {FIX}")
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    array = np.asarray(photo)
    if (
        array.dtype != np.uint8
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[2] not in (3, 4))
    ):
        raise PortraitError(
            f"a portrait array must be uint8 RGB (H, W, 3), got {array.dtype} {array.shape}; {FIX}"
        )
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _find_landmarks(rgb: npt.NDArray[np.uint8]) -> F32:
    """The 68 landmarks (68, 2) of the photo's one face, in photo pixels; ``PortraitError`` otherwise."""
    import dlib

    height, width = rgb.shape[:2]
    longest = max(height, width)
    # dlib's HOG detector (upsampled once) finds faces from about 40 px: enlarge small photos so that a
    # too-small face is still found and reported as too small, and shrink huge ones to keep it quick.
    zoom = min(8.0, 512.0 / longest) if longest < 512 else min(1.0, 1280.0 / longest)
    image = rgb
    if zoom != 1.0:
        size = (max(1, round(width * zoom)), max(1, round(height * zoom)))
        interpolation = cv2.INTER_CUBIC if zoom > 1 else cv2.INTER_AREA
        image = np.asarray(cv2.resize(rgb, size, interpolation=interpolation), np.uint8)
    image = np.ascontiguousarray(image)
    detector = dlib.get_frontal_face_detector()
    boxes, scores, _ = detector.run(image, 1, 0.0)
    found = sorted(zip(scores, boxes, strict=True), key=lambda pair: -pair[0])
    strong = [pair for pair in found if pair[0] >= STRONG_FACE_SCORE]
    if len(strong) > 1:
        raise PortraitError(f"the photo shows {len(strong)} faces; {FIX}")
    if not found:
        raise PortraitError(f"no face found in the photo; {FIX}")
    box = found[0][1]
    face_px = box.width() / zoom
    if face_px < MIN_FACE_PX:
        raise PortraitError(f"the face is only {face_px:.0f} px wide; {FIX} (a larger or closer photo)")
    predictor = dlib.shape_predictor(str(face_landmarks_model()))
    shape = predictor(image, box)
    points: F32 = np.array([[p.x, p.y] for p in shape.parts()], np.float32) / zoom  # (68, 2)
    return points


def _sanitise(motion: npt.NDArray[np.float32]) -> F32:
    """A motion frame (D,) with NaNs zeroed and every field clipped into its range."""
    values = np.nan_to_num(np.asarray(motion, np.float32).reshape(mo.MOTION_DIM), nan=0.0)
    return mo.clip(values)


def _spline(points: F32, steps: int = 4) -> F32:
    """A Catmull-Rom curve through points (P, 2), ``steps`` samples per span -> ((P-1)*steps+1, 2)."""
    padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    t = (np.arange(steps, dtype=np.float32) / steps)[:, None, None]  # (steps, 1, 1)
    p0, p1, p2, p3 = padded[:-3], padded[1:-2], padded[2:-1], padded[3:]  # (P-1, 2) each
    curve = 0.5 * (
        2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3
    )  # (steps, P-1, 2)
    return np.concatenate([curve.transpose(1, 0, 2).reshape(-1, 2), points[-1:]]).astype(np.float32)


def _smoothstep(x: F32) -> F32:
    t = np.clip(x, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _pull_push(image: F32, known: F32) -> F32:
    """Fill the unknown pixels of ``image`` (h, w, 3) smoothly from the known ones (``known`` (h, w) 0-1)."""
    levels: list[tuple[F32, F32]] = []
    colour = image * known[:, :, None]
    weight = known
    while min(weight.shape) > 4:
        levels.append((colour, weight))
        colour = np.asarray(cv2.pyrDown(colour), np.float32)
        weight = np.asarray(cv2.pyrDown(weight), np.float32)
    fill = colour / np.maximum(weight, 1e-6)[:, :, None]
    for colour, weight in reversed(levels):
        up = cv2.pyrUp(fill, dstsize=(weight.shape[1], weight.shape[0]))
        own = colour / np.maximum(weight, 1e-6)[:, :, None]
        confidence = np.clip(weight * 2.0, 0.0, 1.0)[:, :, None]
        fill = (confidence * own + (1.0 - confidence) * up).astype(np.float32)
    return np.asarray(fill, np.float32)


def _point_in_polygon(point: F32, polygon: F32) -> bool:
    contour = polygon.reshape(-1, 1, 2).astype(np.float32)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) > 0


def _delaunay(points: F32) -> I32:
    """Delaunay triangles (M, 3) over distinct ``points`` (N, 2), counter-clockwise in image coordinates."""
    low = points.min(axis=0) - 10.0
    high = points.max(axis=0) + 10.0
    subdiv = cv2.Subdiv2D((int(low[0]), int(low[1]), int(high[0] - low[0]) + 2, int(high[1] - low[1]) + 2))
    for x, y in points:
        subdiv.insert((float(x), float(y)))
    triangles = []
    for row in np.asarray(subdiv.getTriangleList(), np.float32).reshape(-1, 6):
        corners = row.reshape(3, 2)
        distance = np.linalg.norm(points[None, :, :] - corners[:, None, :], axis=2)  # (3, N)
        index = distance.argmin(axis=1)
        if distance[np.arange(3), index].max() > 1e-2 or len(set(index.tolist())) < 3:
            continue  # a corner of Subdiv2D's virtual outer triangle
        triangles.append(index)
    tri = np.array(triangles, np.int32)  # (M, 3)
    area = _signed_area(points, tri)
    tri[area < 0] = tri[area < 0][:, [0, 2, 1]]
    return tri


def _triangulate(points: F32) -> I32 | None:
    """Delaunay triangles (M, 3) with each eye's inside replaced by a fan around its iris vertex, so the
    iris can slide without folding the mesh; None when an eye's rim is not made of mesh edges."""
    tri = _delaunay(points)
    centroids = points[tri].mean(axis=1)  # (M, 2)
    keep = np.ones(len(tri), bool)
    fans = []
    for eye in range(2):
        rim = EYES[eye].tolist()
        inside = {*rim, IRIS[eye]}
        for t, corners in enumerate(tri):
            if set(corners.tolist()) <= inside and _point_in_polygon(centroids[t], points[rim]):
                keep[t] = False
        fans += [[rim[k], rim[(k + 1) % len(rim)], IRIS[eye]] for k in range(len(rim))]
    fan = np.array(fans, np.int32)
    area = _signed_area(points, fan)
    fan[area < 0] = fan[area < 0][:, [0, 2, 1]]
    result = np.concatenate([tri[keep], fan])
    # The fans must replace exactly what was removed: no remaining triangle may straddle an eye's rim.
    total = float(np.abs(_signed_area(points, tri)).sum())
    if abs(float(np.abs(_signed_area(points, result)).sum()) - total) > 1e-4 * total:
        return None
    return result


def _signed_area(points: F32, tri: I32) -> F32:
    a, b, c = points[tri[:, 0]], points[tri[:, 1]], points[tri[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    return (0.5 * cross).astype(np.float32)


class PortraitRenderer:
    """Animates one frontal photo: ``render(motion)`` -> (H, W, 3) RGB, ``landmarks(motion)`` -> (68, 2)."""

    def __init__(
        self, photo: Path | str | npt.NDArray[np.uint8], width: int = 512, height: int = 512
    ) -> None:
        if width < 32 or height < 32:
            raise PortraitError(f"the portrait frame must be at least 32x32, got {width}x{height}")
        self.width = int(width)
        self.height = int(height)
        rgb = _load(photo)
        found = _find_landmarks(rgb)
        self._photo, landmarks = self._frame_photo(rgb, found)
        self._build_frame(landmarks)
        self._build_vertices(landmarks)
        self._build_mesh()
        self._build_basis()
        self._build_layers()
        self._build_mouth()
        self._build_lashes()

    # ---------------------------------------------------------------------------------------------
    # Rig construction
    # ---------------------------------------------------------------------------------------------

    def _frame_photo(self, rgb: npt.NDArray[np.uint8], points: F32) -> tuple[Image, F32]:
        """Crop and scale the photo to the output frame: the face centred, its height a set fraction."""
        eyes = 0.5 * (points[36:42].mean(axis=0) + points[42:48].mean(axis=0))
        chin = points[8]
        face_height = 1.6 * float(np.linalg.norm(chin - eyes))  # hairline to chin, about
        jaw_width = float(np.linalg.norm(points[16] - points[0]))
        zoom = min(FACE_FRACTION * self.height / face_height, 0.5 * self.width / max(jaw_width, 1.0))
        # Eyes a little above the middle leaves room for the hair above and the shoulders below.
        target = np.array([0.5 * self.width, 0.45 * self.height], np.float32)
        origin = eyes - target / zoom  # photo point at the output's top-left corner
        # Slide the window back inside the photo where it can (a little off-centre beats a smeared edge).
        photo_size = np.array([rgb.shape[1], rgb.shape[0]], np.float32)
        window = np.array([self.width, self.height], np.float32) / zoom
        for axis in range(2):
            if window[axis] <= photo_size[axis]:
                inside = float(np.clip(origin[axis], 0.0, photo_size[axis] - window[axis]))
                limit = 0.12 * window[axis]
                origin[axis] = float(np.clip(inside, origin[axis] - limit, origin[axis] + limit))
        source = rgb
        scale = zoom
        if zoom < 1.0:  # shrink with area averaging first, then place with a sub-pixel shift
            small = (max(1, round(rgb.shape[1] * zoom)), max(1, round(rgb.shape[0] * zoom)))
            source = np.asarray(cv2.resize(rgb, small, interpolation=cv2.INTER_AREA), np.uint8)
            scale_xy = np.array([small[0] / rgb.shape[1], small[1] / rgb.shape[0]], np.float32)
            origin_small = origin * scale_xy
            matrix = np.array([[1, 0, -origin_small[0]], [0, 1, -origin_small[1]]], np.float32)
            points_out = (points * scale_xy - origin_small).astype(np.float32)
            interpolation = cv2.INTER_LINEAR
        else:
            matrix = np.array([[scale, 0, -scale * origin[0]], [0, scale, -scale * origin[1]]], np.float32)
            points_out = ((points - origin) * scale).astype(np.float32)
            interpolation = cv2.INTER_CUBIC
        framed = cv2.warpAffine(
            source, matrix, (self.width, self.height), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
        )
        return np.ascontiguousarray(framed, dtype=np.uint8), points_out

    def _build_frame(self, points: F32) -> None:
        """The face frame: origin, axes, face height and reference sizes, from the rest landmarks."""
        eye_r = points[36:42].mean(axis=0)
        eye_l = points[42:48].mean(axis=0)
        axis = eye_l - eye_r
        self._angle = math.atan2(float(axis[1]), float(axis[0]))
        self._ex = np.array([math.cos(self._angle), math.sin(self._angle)], np.float32)
        self._ey = np.array([-self._ex[1], self._ex[0]], np.float32)
        eyes = 0.5 * (eye_r + eye_l)
        self._origin = (0.5 * (eyes + points[8])).astype(np.float32)
        self._s = 1.6 * float(np.linalg.norm(points[8] - eyes))  # face height, hairline to chin

    def _to_local(self, points: F32) -> F32:
        rel = points - self._origin
        return np.stack([rel @ self._ex, rel @ self._ey], axis=1).astype(np.float32)

    def _to_image(self, local: F32) -> F32:
        image: F32 = (self._origin + local[:, :1] * self._ex + local[:, 1:2] * self._ey).astype(np.float32)
        return image

    def _build_vertices(self, points: F32) -> None:
        """Rest vertices (N, 2) and the per-vertex head-pose attributes."""
        s = self._s
        lm = self._to_local(points)  # (68, 2)
        # A dlib mouth or eye can come out slightly crossed; uncross it so the rest mesh has no folds.
        for upper, lower in zip(INNER_UPPER, INNER_LOWER, strict=True):
            if lm[lower, 1] < lm[upper, 1]:
                lm[upper, 1] = lm[lower, 1] = 0.5 * (lm[upper, 1] + lm[lower, 1])
        for eye in range(2):
            for upper, lower in zip(UPPER_LID[eye], LOWER_LID[eye], strict=True):
                if lm[lower, 1] < lm[upper, 1] + 1.0:
                    lm[lower, 1] = lm[upper, 1] + 1.0
        v = np.zeros((N_VERTICES, 2), np.float32)
        v[:68] = lm
        for eye in range(2):
            v[IRIS[eye]] = lm[EYES[eye]].mean(axis=0)
        brow_over = ((18, 19, 20, 21), (22, 23, 24, 25))
        lid_under = ((36, 37, 38, 39), (42, 43, 44, 45))
        for eye in range(2):
            for k, (lid, brow) in enumerate(zip(lid_under[eye], brow_over[eye], strict=True)):
                v[CREASE[eye][k]] = lm[lid] + 0.55 * (lm[brow] - lm[lid])
            for k, lid in enumerate(UPPER_LID[eye]):
                v[LASH[eye][k]] = lm[lid] + 0.4 * (v[CREASE[eye][k + 1]] - lm[lid])
        v[CHEEK[0]] = 0.5 * (lm[2] + lm[31])
        v[CHEEK[1]] = 0.5 * (lm[14] + lm[35])
        v[JOWL[0]] = 0.5 * (lm[4] + lm[48])
        v[JOWL[1]] = 0.5 * (lm[12] + lm[54])
        brow_y = float(lm[17:27, 1].min())
        for k, index in enumerate((17, 19, 21, 22, 24, 26)):
            v[FOREHEAD[k]] = (lm[index, 0], lm[index, 1] - 0.17 * s)
        xs = np.linspace(lm[17, 0], lm[26, 0], 5)
        for k in range(5):
            v[FOREHEAD[6 + k]] = (xs[k], brow_y - 0.4 * s)
        jaw_width = float(lm[16, 0] - lm[0, 0])
        eyes_y = float(lm[36:48, 1].mean())
        centre_x = float(lm[27, 0])
        # The head outline: an ellipse around the face generous enough for most hair (GrabCut trims it).
        axes = (0.88 * jaw_width, 0.82 * s)
        angles = np.radians(np.linspace(-20.0, 200.0, RING_POINTS))
        ring = np.stack(
            [centre_x + axes[0] * np.cos(angles), eyes_y - axes[1] * np.sin(angles)],
            axis=1,
        )
        v[RING_START : RING_START + RING_POINTS] = ring
        chin = lm[8]
        v[JAW_SIDE[0]] = (lm[4, 0] - 0.15 * jaw_width, lm[4, 1])
        v[JAW_SIDE[1]] = (lm[12, 0] + 0.15 * jaw_width, lm[12, 1])
        # A neck is about two thirds as wide as the jaw; a wider one would drag collars along.
        v[NECK_TOP[0]] = (chin[0] - 0.33 * jaw_width, chin[1] + 0.1 * s)
        v[NECK_TOP[1]] = (chin[0] + 0.33 * jaw_width, chin[1] + 0.1 * s)
        v[NECK_MID[0]] = (chin[0] - 0.34 * jaw_width, chin[1] + 0.26 * s)
        v[NECK_MID[1]] = (chin[0] + 0.34 * jaw_width, chin[1] + 0.26 * s)
        # A row of fixed vertices across the body: no triangle crosses it, so below it the photo never
        # moves and the head's mask can run on below it without a seam.
        collar_y = chin[1] + 0.42 * s
        for k, dx in enumerate(COLLAR_OFFSETS):
            v[COLLAR[k]] = (chin[0] + dx * jaw_width, collar_y)
        self._collar_y = float(collar_y)
        angles = np.radians(np.arange(OUTER_POINTS) * 360.0 / OUTER_POINTS + 7.5)
        outer_x = axes[0] + 0.5 * s
        outer_up = axes[1] + 0.45 * s
        outer_down = collar_y - eyes_y + 0.35 * s
        sin = np.sin(angles)
        v[OUTER_START:] = np.stack(
            [centre_x + outer_x * np.cos(angles), eyes_y - np.where(sin > 0, outer_up, outer_down) * sin],
            axis=1,
        )
        self._rest_local = v
        self._rest = self._to_image(v)  # (N, 2)

        # Head pose: weight (how fully a vertex follows the head), depth in face heights (how far it
        # shifts when the head turns) and foreshortening (how much it narrows when the head turns).
        weight = np.ones(N_VERTICES, np.float32)
        weight[list(NECK_TOP)] = 0.8
        weight[list(NECK_MID)] = 0.45
        weight[list(COLLAR)] = 0.0
        weight[OUTER_START:] = 0.0
        depth = np.zeros(N_VERTICES, np.float32)
        depth[0:17] = 0.02 + 0.06 * (1.0 - np.abs(np.arange(17) - 8) / 8.0)
        depth[17:27] = 0.07
        depth[27:36] = (0.08, 0.1, 0.12, 0.14, 0.1, 0.11, 0.12, 0.11, 0.1)
        depth[36:48] = 0.06
        depth[48:60] = 0.1
        depth[60:68] = 0.09
        depth[list(IRIS)] = 0.06
        depth[70:82] = 0.065
        depth[list(CHEEK)] = 0.07
        depth[list(JOWL)] = 0.05
        depth[FOREHEAD] = 0.06
        foreshorten = np.ones(N_VERTICES, np.float32)
        foreshorten[RING_START : RING_START + RING_POINTS] = 0.3
        foreshorten[NECK_TOP[0] :] = 0.0
        self._weight = weight
        attributes = np.stack([depth, foreshorten, weight])  # (3, N)
        self._attributes3 = np.tile(attributes, 3)  # (3, 3N): the open, blinked and lid vertex sets
        self._pivot = self._to_image(np.array([[chin[0], chin[1] + 0.22 * s]], np.float32))[0]

    def _build_mesh(self) -> None:
        """The mesh's triangles (M, 3), in draw order."""
        s = self._s
        # Triangulate with the mouth and eyes held open so that their contours become mesh edges even
        # when the photo's mouth or eyes are closed; use the photo's own points only if that folds.
        topo = self._rest_local.copy()
        for upper, lower in zip(INNER_UPPER, INNER_LOWER, strict=True):
            lift = max(0.0, float(topo[upper, 1] + 0.03 * s - topo[lower, 1]))
            topo[lower, 1] += lift
            topo[[58, 57, 56][list(INNER_LOWER).index(lower)], 1] += lift
        for eye in range(2):
            for upper, lower in zip(UPPER_LID[eye], LOWER_LID[eye], strict=True):
                topo[lower, 1] = max(float(topo[lower, 1]), float(topo[upper, 1]) + 0.035 * s)
            topo[IRIS[eye]] = topo[EYES[eye]].mean(axis=0)
        tri = _triangulate(topo)
        if tri is None or (_signed_area(self._rest_local, tri) < -0.5).any():
            tri = _triangulate(self._rest_local)
        if tri is None:
            tri = _delaunay(self._rest_local)
        fixed = self._weight == 0.0
        # Draw order: triangles touching the fixed outer ring first (under extreme poses they may fold,
        # and the head drawn after them must win), then the face, then the eyes' insides mapped with
        # the lids open, then the upper lids, which cover what a closing lid hides.
        lids = {*UPPER_LID[0], *UPPER_LID[1], *LASH[0].tolist(), *LASH[1].tolist()}
        kind = np.where(fixed[tri].any(axis=1), 0, 1)  # (M,)
        for t, corners in enumerate(tri):
            members = set(corners.tolist())
            if any(members <= {*EYES[e].tolist(), IRIS[e]} for e in range(2)):
                kind[t] = 2
            elif members & lids:
                kind[t] = 3
        order = np.argsort(kind, kind="stable")
        self._tri = tri[order]  # (M, 3)
        self._eye_inside = kind[order] == 2  # (M,)
        self._moving = ~fixed[self._tri].all(axis=1)  # (M,)
        self._outside = len(tri)  # index of the "no triangle" row of the affine table

    def _build_basis(self) -> None:
        """Per-field vertex displacements (K, N, 2) in local pixels, for the linearly acting fields."""
        s = self._s
        lm = self._rest_local
        basis = np.zeros((len(LINEAR), N_VERTICES, 2), np.float32)
        field = {name: basis[k] for k, name in enumerate(LINEAR)}
        mouth = lm[48:68].mean(axis=0)
        mouth_width = float(lm[54, 0] - lm[48, 0])
        eye_height = [float(np.mean(lm[list(LOWER_LID[e]), 1] - lm[list(UPPER_LID[e]), 1])) for e in range(2)]
        eye_width = [float(lm[39, 0] - lm[36, 0]), float(lm[45, 0] - lm[42, 0])]

        # jaw_open: the jaw turns about the ears, so jaw-line points drop with their distance below them.
        b = field["jaw_open"]
        drop = 0.13 * s
        hinge_y = 0.5 * (lm[0, 1] + lm[16, 1])
        jaw_w = np.clip((lm[0:17, 1] - hinge_y) / max(lm[8, 1] - hinge_y, 1.0), 0.0, 1.0) ** 1.3
        b[0:17, 1] = drop * jaw_w
        b[55:60, 1] = drop * np.array([0.9, 0.97, 1.0, 0.97, 0.9])
        b[65:68, 1] = drop
        b[[48, 54], 1] = 0.45 * drop
        b[[60, 64], 1] = 0.5 * drop
        b[[48, 60], 0] = 0.04 * mouth_width
        b[[54, 64], 0] = -0.04 * mouth_width
        b[49:54, 1] = -0.03 * drop
        b[list(JOWL), 1] = 0.55 * drop
        b[list(CHEEK), 1] = 0.12 * drop
        b[list(NECK_TOP), 1] = 0.35 * drop
        b[list(NECK_MID), 1] = 0.1 * drop

        lips = np.arange(48, 68)
        outer, inner = np.arange(48, 60), np.arange(60, 68)
        b = field["mouth_wide"]
        b[lips, 0] = (lm[lips, 0] - mouth[0]) * 0.2
        b[lips, 1] = -(lm[lips, 1] - mouth[1]) * 0.2
        b[JOWL[0], 0], b[JOWL[1], 0] = -0.03 * mouth_width, 0.03 * mouth_width
        b[CHEEK[0], 0], b[CHEEK[1], 0] = -0.02 * mouth_width, 0.02 * mouth_width

        b = field["mouth_round"]
        b[outer, 0] = -(lm[outer, 0] - mouth[0]) * 0.3
        b[inner, 0] = -(lm[inner, 0] - mouth[0]) * 0.4
        b[outer, 1] = (lm[outer, 1] - mouth[1]) * 0.18
        b[inner, 1] = (lm[inner, 1] - mouth[1]) * 0.1
        b[JOWL[0], 0], b[JOWL[1], 0] = 0.03 * mouth_width, -0.03 * mouth_width

        b = field["upper_lip_up"]
        b[[61, 62, 63], 1] = -0.045 * s * np.array([0.85, 1.0, 0.85])
        b[[50, 51, 52], 1] = -0.04 * s * np.array([0.9, 1.0, 0.9])
        b[[49, 53], 1] = -0.025 * s
        b[[48, 54], 1] = -0.008 * s
        b[[60, 64], 1] = -0.01 * s
        b[31:36, 1] = -0.006 * s

        b = field["lower_lip_drop"]
        b[[65, 66, 67], 1] = 0.045 * s * np.array([0.85, 1.0, 0.85])
        b[55:60, 1] = 0.04 * s * np.array([0.55, 0.9, 1.0, 0.9, 0.55])
        b[[60, 64], 1] = 0.01 * s
        b[[48, 54], 1] = 0.006 * s

        b = field["lower_lip_tuck"]  # the lower lip pulled up under the upper teeth, as in /f v/
        b[[65, 66, 67], 1] = -0.05 * s
        b[55:60, 1] = -0.035 * s * np.array([0.6, 0.9, 1.0, 0.9, 0.6])

        # smile_l pulls the viewer's-right corner (54) up and out; smile_r mirrors it on 48.
        smile = {
            54: (0.03, -0.04),
            64: (0.025, -0.035),
            53: (0.012, -0.022),
            55: (0.015, -0.03),
            63: (0.01, -0.018),
            65: (0.01, -0.022),
            52: (0.005, -0.01),
            56: (0.005, -0.012),
            CHEEK[1]: (0.008, -0.02),
            JOWL[1]: (0.01, -0.012),
            46: (0.0, -0.008),
            47: (0.0, -0.008),
        }
        mirror = {54: 48, 64: 60, 53: 49, 55: 59, 63: 61, 65: 67, 52: 50, 56: 58, 46: 41, 47: 40}
        mirror |= {CHEEK[1]: CHEEK[0], JOWL[1]: JOWL[0]}
        for index, (dx, dy) in smile.items():
            field["smile_l"][index] = (dx * s, dy * s)
            field["smile_r"][mirror[index]] = (-dx * s, dy * s)

        brow_r, brow_l = np.arange(17, 22), np.arange(22, 27)
        field["brow_up_r"][brow_r, 1] = -0.05 * s * np.array([0.8, 0.95, 1.0, 0.9, 0.7])
        field["brow_up_l"][brow_l, 1] = -0.05 * s * np.array([0.7, 0.9, 1.0, 0.95, 0.8])
        field["brow_up_r"][FOREHEAD[:3], 1] = -0.02 * s
        field["brow_up_l"][FOREHEAD[3:6], 1] = -0.02 * s
        field["brow_up_r"][CREASE[0], 1] = -0.018 * s
        field["brow_up_l"][CREASE[1], 1] = -0.018 * s
        b = field["brow_down"]
        b[17:27, 1] = 0.03 * s * np.array([0.6, 0.8, 1.0, 1.1, 1.2, 1.2, 1.1, 1.0, 0.8, 0.6])
        b[[20, 21, 22, 23], 0] = 0.01 * s * np.array([1.2, 2.0, -2.0, -1.2])
        b[70:82, 1] = 0.012 * s
        b[FOREHEAD[:6], 1] = 0.008 * s

        for e in range(2):
            field["squint"][list(LOWER_LID[e]), 1] = -0.25 * eye_height[e]
            field["squint"][list(UPPER_LID[e]), 1] = 0.1 * eye_height[e]
            field["gaze_x"][IRIS[e], 0] = 0.2 * eye_width[e]
            field["gaze_y"][IRIS[e], 1] = -0.25 * eye_height[e]
            field["gaze_y"][list(UPPER_LID[e]), 1] = -0.18 * eye_height[e]
            field["gaze_y"][list(LOWER_LID[e]), 1] = -0.1 * eye_height[e]
        self._basis = basis.reshape(len(LINEAR), -1)  # (K, N*2)

    def _build_layers(self) -> None:
        """The soft head mask and the background plate with the head filled in."""
        s = self._s
        v = self._rest_local
        outline = [*range(RING_START, RING_START + RING_POINTS), JAW_SIDE[0], NECK_TOP[0], NECK_MID[0]]
        polygon = v[outline].copy()
        # Carry the mask well below the collar: below it the mesh is fixed, so the seam cannot show.
        bottom = np.array(
            [
                [v[COLLAR[2], 0], self._collar_y + 0.3 * s],
                [v[COLLAR[4], 0], self._collar_y + 0.3 * s],
            ],
            np.float32,
        )
        polygon = np.concatenate([polygon, bottom, v[[NECK_MID[1], NECK_TOP[1], JAW_SIDE[1]]]])
        mask = np.zeros((self.height, self.width), np.uint8)
        cv2.fillPoly(mask, [np.round(self._to_image(polygon) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        margin = max(1, round(0.035 * s))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        mask = np.asarray(cv2.erode(mask, kernel), np.uint8)
        mask = self._segment(mask)
        feather = max(0.6, 0.005 * s)
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), feather)
        self._alpha = np.ascontiguousarray(alpha, dtype=np.float32)  # (H, W)

        # The plate: the photo, with the head and neck above the collar filled from their surroundings.
        # Wide enough to clear the hair's soft fringe, which the segmentation leaves outside.
        grow = max(1, round(0.025 * s))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        hole = cv2.dilate(mask, kernel).astype(np.float32) / 255.0
        hole = np.maximum(hole, cv2.GaussianBlur(hole, (0, 0), 0.3 * grow))
        ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        local_y = (xs - self._origin[0]) * self._ey[0] + (ys - self._origin[1]) * self._ey[1]
        hole *= _smoothstep((self._collar_y - 0.01 * s - local_y) / max(1.0, 0.02 * s))
        photo = self._photo.astype(np.float32)
        # Fill the head from the background beside and above it only (the body below would darken it),
        # and from the mouth down from everything around it.
        mouth_y = float(v[51, 1])
        below = _smoothstep((local_y - mouth_y) / max(1.0, 0.1 * s))
        head_fill = _pull_push(photo, (1.0 - hole) * (1.0 - below))
        neck_fill = _pull_push(photo, 1.0 - hole)
        fill = head_fill * (1.0 - below[:, :, None]) + neck_fill * below[:, :, None]
        plate = photo * (1.0 - hole[:, :, None]) + fill * hole[:, :, None]
        self._plate = np.ascontiguousarray(np.clip(plate + 0.5, 0, 255).astype(np.uint8))  # (H, W, 3)

    def _segment(self, region: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The head, hair and neck inside ``region`` (H, W) 0/255, found by GrabCut; 0/255 (H, W).

        The region is a generous guess; whatever in it is background, collar or shoulder must not move
        with the head. The face itself is always kept; should GrabCut lose most of the region, the
        guess is used as it is.
        """
        zoom = min(1.0, 384.0 / max(self.width, self.height))  # GrabCut is slow; hair edges survive
        size = (max(8, round(self.width * zoom)), max(8, round(self.height * zoom)))
        small = cv2.resize(region, size, interpolation=cv2.INTER_AREA) > 127
        face = np.zeros(small.shape, np.uint8)
        hull = cv2.convexHull(np.round(self._rest[:27] * zoom).astype(np.int32))
        cv2.fillConvexPoly(face, hull, 1)
        ring = cv2.dilate(small.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        seeds = np.full(small.shape, cv2.GC_BGD, np.uint8)
        seeds[ring] = cv2.GC_PR_BGD
        seeds[small] = cv2.GC_PR_FGD
        seeds[face > 0] = cv2.GC_FGD
        try:
            image = cv2.resize(self._photo, size, interpolation=cv2.INTER_AREA)
            background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            cv2.setRNGSeed(0)  # GrabCut's k-means starts at random; keep the rig reproducible
            cv2.grabCut(image, seeds, (0, 0, 1, 1), background, foreground, 4, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            return region
        head = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.uint8)
        # Keep the part connected to the face: stray specks of background that matched go.
        count, labels = cv2.connectedComponents(head)
        if count > 2:
            head = (labels == labels[face > 0][0]).astype(np.uint8) if (face > 0).any() else head
        head = cv2.morphologyEx(head, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        if int(head.sum()) < 0.4 * int(small.sum()):
            return region
        full = cv2.resize(head.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return np.where((full > 0.5) & (region > 127), 255, 0).astype(np.uint8)

    def _build_mouth(self) -> None:
        """What the painted mouth interior needs: the rest opening, the teeth's line and the colours."""
        s = self._s
        lm = self._rest_local
        self._rest_gap = float(np.mean(lm[INNER_LOWER, 1] - lm[INNER_UPPER, 1]))
        # The upper teeth are fixed to the skull: their edge sits a little below the rest upper lip.
        teeth = lm[UPPER_CHAIN].copy()
        teeth[:, 1] += max(0.022 * s, 0.6 * self._rest_gap)
        self._teeth_edge = _spline(teeth)  # (17, 2) local
        # Head-pose attributes (depth, foreshortening, weight) of the teeth: those of the inner lips.
        self._teeth_attributes = np.repeat(np.array([[0.09], [1.0], [1.0]], np.float32), 17, axis=1)
        self._teeth_half_width = 0.42 * float(lm[64, 0] - lm[60, 0])

        # Light the painted colours like the face: scale them by the skin's brightness beside the nose.
        luma = cv2.cvtColor(self._photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
        blurred = cv2.blur(luma, (5, 5))
        cheeks = np.round(self._rest[[CHEEK[0], CHEEK[1], 29]]).astype(np.int32)
        cheeks = np.clip(cheeks, 0, [self.width - 1, self.height - 1])
        light = float(np.clip(blurred[cheeks[:, 1], cheeks[:, 0]].mean() / 170.0, 0.55, 1.0))
        enamel = np.array([238.0, 232.0, 220.0], np.float32) * light
        # A photo that shows its teeth gives their real colour: the brighter part of the mouth opening.
        mask = np.zeros(luma.shape, np.uint8)
        cv2.fillPoly(mask, [np.round(self._rest[60:68]).astype(np.int32)], 1)
        inside = mask > 0
        if int(inside.sum()) >= 12:
            values = luma[inside]
            bright = values >= np.percentile(values, 70)
            sample = np.median(self._photo[inside][bright].astype(np.float32), axis=0)
            lips = blurred[
                np.clip(np.round(self._rest[[50, 51, 52, 57]][:, 1]).astype(np.int32), 0, self.height - 1),
                np.clip(np.round(self._rest[[50, 51, 52, 57]][:, 0]).astype(np.int32), 0, self.width - 1),
            ]
            if (
                float(np.dot(sample, (0.299, 0.587, 0.114))) > float(lips.mean()) + 20.0
                and np.ptp(sample) < 80
            ):
                enamel = (0.8 * sample / max(float(sample.max()), 1.0) * 245.0 + 0.2 * enamel).astype(
                    np.float32
                )
        self._enamel = enamel  # (3,)
        lip_points = np.round(
            0.5 * (self._rest[[50, 51, 52, 56, 57, 58]] + self._rest[[61, 62, 63, 65, 66, 67]])
        )
        lip_points = np.clip(lip_points.astype(np.int32), 0, [self.width - 1, self.height - 1])
        lip = (
            cv2.blur(self._photo, (3, 3))[lip_points[:, 1], lip_points[:, 0]].astype(np.float32).mean(axis=0)
        )
        self._crease = (lip * (0.5, 0.38, 0.38)).astype(np.float32)  # (3,) where closed lips meet
        self._closed_lips = self._fill_teeth(s) if self._rest_gap > 0.012 * s else None
        self._gum = np.array([196.0, 112.0, 116.0], np.float32) * light
        self._cavity = np.array([62.0, 26.0, 28.0], np.float32) * light
        self._tongue = np.array([170.0, 82.0, 86.0], np.float32) * light

    def _build_lashes(self) -> None:
        """Each eye's lash colour: the darker part of the photo's upper lid line."""
        self._lash_colour: list[F32] = []  # per eye (3,)
        for eye in range(2):
            line = np.zeros((self.height, self.width), np.uint8)
            rim = np.round(self._rest[EYES[eye][:4]]).astype(np.int32)
            cv2.polylines(line, [rim], False, 1, max(1, round(0.012 * self._s)))
            pixels = self._photo[line > 0].astype(np.float32)  # (P, 3)
            lash = np.array([60.0, 45.0, 40.0], np.float32)
            if len(pixels) >= 4:
                luma = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
                lash = np.minimum(lash, pixels[luma <= np.percentile(luma, 25)].mean(axis=0))
            self._lash_colour.append(lash.astype(np.float32))

    def _fill_teeth(self, s: float) -> tuple[Image, F32] | None:
        """For a photo with parted lips: the photo with its teeth filled over from the lips around them,
        and the soft mask (H, W) of those teeth, for drawing the lips closed."""
        mouth = np.round(self._rest[48:60]).astype(np.int32)
        x0, y0 = np.maximum(mouth.min(axis=0) - 8, 0)
        x1, y1 = np.minimum(mouth.max(axis=0) + 9, [self.width, self.height])
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        crop = self._photo[y0:y1, x0:x1]
        redness = cv2.cvtColor(cv2.GaussianBlur(crop, (0, 0), 0.8), cv2.COLOR_RGB2LAB)[:, :, 1].astype(
            np.float32
        )
        outer = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillPoly(outer, [mouth - (x0, y0)], 1)
        inner = np.zeros_like(outer)
        cv2.fillPoly(inner, [np.round(self._rest[60:68]).astype(np.int32) - (x0, y0)], 1)
        lips = (outer > 0) & (inner == 0)
        if int(inner.sum()) < 6 or int(lips.sum()) < 6:
            return None
        # Teeth are much less red than lips; what is inside the lips and not lip-red is teeth or mouth.
        threshold = 0.5 * (float(np.median(redness[inner > 0])) + float(np.median(redness[lips])))
        reach = max(1, round(0.03 * s))
        near = cv2.dilate(inner, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1)))
        teeth = ((inner > 0) | ((outer > 0) & (near > 0) & (redness < threshold))).astype(np.float32)
        teeth = np.asarray(cv2.dilate(teeth, np.ones((3, 3), np.uint8)), np.float32)
        soft = cv2.GaussianBlur(teeth, (0, 0), 0.8)
        filled = _pull_push(crop.astype(np.float32), 1.0 - teeth)
        source = self._photo.copy()
        source[y0:y1, x0:x1] = np.clip(filled + 0.5, 0, 255).astype(np.uint8)
        mask = np.zeros((self.height, self.width), np.float32)
        mask[y0:y1, x0:x1] = soft
        return source, mask

    # ---------------------------------------------------------------------------------------------
    # Per frame
    # ---------------------------------------------------------------------------------------------

    def _pose(self, motion: npt.NDArray[np.float32]) -> _Pose:
        """The frame's vertices, eyes open and with blinks, in output pixels."""
        m = _sanitise(motion)

        def g(name: str) -> float:
            return float(m[mo.INDEX[name]])

        lower = g("lower_lip_down")
        coef = np.array(
            [
                g("jaw_open"),
                g("mouth_wide"),
                g("mouth_round"),
                g("upper_lip_up"),
                max(lower, 0.0),
                max(-lower, 0.0),
                g("smile_l"),
                g("smile_r"),
                g("brow_up_l"),
                g("brow_up_r"),
                g("brow_down"),
                g("squint"),
                g("gaze_x"),
                g("gaze_y"),
            ],
            np.float32,
        )
        local = self._rest_local + (coef @ self._basis).reshape(N_VERTICES, 2)  # (N, 2)

        # Lips never cross; the lower lip cannot pass the upper one.
        local[INNER_LOWER, 1] = np.maximum(local[INNER_LOWER, 1], local[INNER_UPPER, 1])
        local[OUTER_LOWER, 1] = np.maximum(local[OUTER_LOWER, 1], local[INNER_LOWER, 1])
        # lips_pressed seals the inner lips on a common line; at 1 they coincide exactly.
        pressed = g("lips_pressed")
        if pressed > 0.0:
            upper, lower = local[INNER_UPPER], local[INNER_LOWER]
            seal = upper + 0.35 * (lower - upper)
            new_upper = (1.0 - pressed) * upper + pressed * seal
            new_lower = (1.0 - pressed) * lower + pressed * seal
            local[OUTER_UPPER, 1] += 0.6 * (new_upper[:, 1] - upper[:, 1]) + 0.012 * self._s * pressed
            local[OUTER_LOWER, 1] += 0.7 * (new_lower[:, 1] - lower[:, 1]) - 0.012 * self._s * pressed
            local[[49, 53], 1] += 0.3 * (new_upper[[0, 2], 1] - upper[[0, 2], 1])
            local[[59, 55], 1] += 0.35 * (new_lower[[0, 2], 1] - lower[[0, 2], 1])
            local[INNER_UPPER] = new_upper
            local[INNER_LOWER] = new_lower
        # The iris stays well inside the eye's opening, whatever squint and gaze do to the lids.
        for eye in range(2):
            rim = local[EYES[eye]]
            top = float(np.mean(local[list(UPPER_LID[eye]), 1]))
            low = max(top, float(np.mean(local[list(LOWER_LID[eye]), 1])))
            lo_x, hi_x = float(rim[0, 0]), float(rim[3, 0])
            iris = local[IRIS[eye]]
            iris[0] = np.clip(iris[0], lo_x + 0.3 * (hi_x - lo_x), hi_x - 0.3 * (hi_x - lo_x))
            iris[1] = np.clip(iris[1], top + 0.3 * (low - top), low - 0.3 * (low - top))
        opened = local.copy()
        # Blinks: the upper lid comes down onto the lower lid; at 1 the lid points coincide exactly. The
        # band of lashes above it moves down whole, the lid skin above that stretches; the mesh's lid
        # goes a little past the lower lid, to cover any white the landmarks leave below them.
        blinks = (g("blink_r"), g("blink_l"))
        lid = local.copy()
        for eye in range(2):
            amount = blinks[eye]
            if amount <= 0.0:
                continue
            upper_i, lower_i = list(UPPER_LID[eye]), list(LOWER_LID[eye])
            local[upper_i] = (1.0 - amount) * local[upper_i] + amount * local[lower_i]
            drop = local[upper_i] - opened[upper_i]  # (2, 2)
            drop[:, 1] += amount * max(1.0, 0.008 * self._s)
            lid[upper_i] = opened[upper_i] + drop
            lid[LASH[eye]] += drop
            lid[CREASE[eye], 1] += 0.15 * float(drop[:, 1].mean())
        posed = self._head(np.concatenate([opened, local, lid]), m, self._attributes3)
        n = N_VERTICES
        angle = self._angle + g("head_roll")
        return _Pose(posed[:n], posed[n : 2 * n], posed[2 * n :], angle, self._head_scale(m))

    def _head_scale(self, m: F32) -> float:
        return 1.0 + 0.5 * float(m[mo.INDEX["head_z"]])

    def _head(self, local: F32, m: F32, attributes: F32) -> F32:
        """Apply the head pose to local points (P, 2) -> output pixels (P, 2).

        ``attributes`` (3, P): depth in face heights (how far a point shifts when the head turns),
        foreshortening (how much it narrows), weight (how fully it follows the head).
        """
        s = self._s
        pitch, yaw, roll = (float(m[mo.INDEX[n]]) for n in mo.HEAD_ROTATION)
        shift_x, shift_y, _ = (float(m[mo.INDEX[n]]) for n in mo.HEAD_TRANSLATION)
        scale = self._head_scale(m)
        depth, narrow, weight = attributes
        # Turning the head: points nearer the camera (the nose) shift further, the face narrows a little.
        x = local[:, 0] * (1.0 - narrow * (1.0 - math.cos(yaw))) + (depth + 0.08) * s * math.sin(yaw)
        y = local[:, 1] * (1.0 - narrow * (1.0 - math.cos(pitch))) + (depth + 0.06) * s * math.sin(pitch)
        ex, ey, origin = self._ex, self._ey, self._origin
        px = origin[0] + scale * (x * ex[0] + y * ey[0])
        py = origin[1] + scale * (x * ex[1] + y * ey[1])
        cr, sr = math.cos(roll), math.sin(roll)
        dx, dy = px - self._pivot[0], py - self._pivot[1]
        px = self._pivot[0] + cr * dx - sr * dy + shift_x * s
        py = self._pivot[1] + sr * dx + cr * dy + shift_y * s
        still_x = origin[0] + local[:, 0] * ex[0] + local[:, 1] * ey[0]
        still_y = origin[1] + local[:, 0] * ex[1] + local[:, 1] * ey[1]
        # (1 - w) * a + w * b, not a + w * (b - a): equal points must stay exactly equal at w = 1.
        out_x = (1.0 - weight) * still_x + weight * px
        out_y = (1.0 - weight) * still_y + weight * py
        return np.stack([out_x, out_y], axis=1).astype(np.float32)

    def landmarks(self, motion: npt.NDArray[np.float32]) -> Points:
        """The 68 rig landmarks (68, 2) in output pixels that ``render`` draws for this motion."""
        return np.ascontiguousarray(self._pose(motion).blink[:68], dtype=np.float32)

    def render(self, motion: npt.NDArray[np.float32]) -> Image:
        """Motion frame (D,) -> RGB image (H, W, 3) uint8."""
        pose = self._pose(motion)
        m = _sanitise(motion)
        out = self._plate.copy()
        maps = self._warp(out, pose)
        if maps is not None and self._closed_lips is not None:
            self._close_lips(out, pose, maps)
        self._draw_mouth(out, pose, m)
        for eye, name in ((0, "blink_r"), (1, "blink_l")):
            if m[mo.INDEX[name]] > 0.3:
                self._draw_lashes(out, pose, eye, float(m[mo.INDEX[name]]))
        return out

    def _draw_lashes(self, out: Image, pose: _Pose, eye: int, amount: float) -> None:
        """A closing lid's lash line, drawn along its edge, anti-aliased, in place; it also hides the
        sliver of white that landmarks sitting inside the eye leave below a closed lid."""
        s = self._s * pose.scale
        rim = EYES[eye]
        edge = pose.blink[rim[:4]]  # (4, 2) corner, lid, lid, corner
        ex = np.array([math.cos(pose.angle), math.sin(pose.angle)], np.float32)
        ey = np.array([-ex[1], ex[0]], np.float32)
        centre = edge.mean(axis=0)
        rel = _spline(edge) - centre
        curve_u, curve_v = np.maximum.accumulate(rel @ ex), rel @ ey
        half = 0.5 * float(curve_u[-1] - curve_u[0])
        reach = 1.15 * half  # a little past the landmark corners, which sit inside the real ones
        margin = 2 + 0.02 * s
        corners = np.array([centre - reach * ex, centre + reach * ex], np.float32)
        x0 = max(0, int(np.floor(min(corners[:, 0].min(), edge[:, 0].min()) - margin)))
        y0 = max(0, int(np.floor(min(corners[:, 1].min(), edge[:, 1].min()) - margin)))
        x1 = min(self.width, int(np.ceil(max(corners[:, 0].max(), edge[:, 0].max()) + margin)) + 1)
        y1 = min(self.height, int(np.ceil(max(corners[:, 1].max(), edge[:, 1].max()) + margin)) + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        gx = np.arange(x0, x1, dtype=np.float32)[None, :] - centre[0]
        gy = np.arange(y0, y1, dtype=np.float32)[:, None] - centre[1]
        u = gx * ex[0] + gy * ex[1]  # (h, w)
        v = gx * ey[0] + gy * ey[1]
        mid_u = 0.5 * float(curve_u[0] + curve_u[-1])
        across = np.clip((u - mid_u) / reach, -1.0, 1.0)
        taper = 1.0 - np.abs(across) ** 4  # thick in the middle, fading at the corners
        width = max(1.2, 0.01 * s) * (0.4 + 0.6 * taper)
        centre_line = np.interp(u, curve_u, curve_v) + 0.35 * width  # reaching below the edge more
        line = np.clip(0.5 * width - np.abs(v - centre_line) + 0.5, 0.0, 1.0) * taper
        strength = float(_smoothstep(np.array((amount - 0.3) / 0.6, np.float32))) * 0.8
        weight = (line * strength)[:, :, None]
        region = out[y0:y1, x0:x1]
        region[:] = np.clip(region + weight * (self._lash_colour[eye] - region) + 0.5, 0, 255).astype(
            np.uint8
        )

    def _gap(self, pose: _Pose) -> tuple[float, float]:
        """The inner lips' mean opening now and at rest, in output pixels along the face's down axis."""
        down = np.array([-math.sin(pose.angle), math.cos(pose.angle)], np.float32)
        gap = float(np.mean((pose.blink[INNER_LOWER] - pose.blink[INNER_UPPER]) @ down))
        return gap, self._rest_gap * pose.scale

    def _affines(self, pose: _Pose) -> tuple[F32, F32]:
        """Deformed triangles (M, 3, 2) and their maps back to the rest photo (M+1, 6)."""
        deformed = pose.lid[self._tri]  # (M, 3, 2)
        deformed[self._eye_inside] = pose.open[self._tri[self._eye_inside]]
        rest = self._rest[self._tri]  # (M, 3, 2)
        p0, p1, p2 = deformed[:, 0], deformed[:, 1], deformed[:, 2]
        q0, q1, q2 = rest[:, 0], rest[:, 1], rest[:, 2]
        a, b = p1 - p0, p2 - p0  # (M, 2)
        det = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        ok = np.abs(det) > 1e-6
        inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        # Inverse of [a b] (columns), times [qa qb].
        i00, i01 = b[:, 1] * inv_det, -b[:, 0] * inv_det
        i10, i11 = -a[:, 1] * inv_det, a[:, 0] * inv_det
        qa, qb = q1 - q0, q2 - q0
        m00 = qa[:, 0] * i00 + qb[:, 0] * i10
        m01 = qa[:, 0] * i01 + qb[:, 0] * i11
        m10 = qa[:, 1] * i00 + qb[:, 1] * i10
        m11 = qa[:, 1] * i01 + qb[:, 1] * i11
        # A collapsed triangle covers no area; give its edge pixels the mean translation.
        m00 = np.where(ok, m00, 1.0)
        m11 = np.where(ok, m11, 1.0)
        m01 = np.where(ok, m01, 0.0)
        m10 = np.where(ok, m10, 0.0)
        shift = (rest - deformed).mean(axis=1)
        t0 = np.where(ok, q0[:, 0] - m00 * p0[:, 0] - m01 * p0[:, 1], shift[:, 0])
        t1 = np.where(ok, q0[:, 1] - m10 * p0[:, 0] - m11 * p0[:, 1], shift[:, 1])
        table = np.empty((len(self._tri) + 1, 6), np.float32)
        table[:-1] = np.stack([m00, m01, t0, m10, m11, t1], axis=1)
        table[-1] = (0.0, 0.0, -1e4, 0.0, 0.0, -1e4)  # no triangle: sample far outside (transparent)
        return deformed, table

    def _warp(self, out: Image, pose: _Pose) -> _Maps | None:
        """Warp the head by the deformed mesh and blend it over the plate, in place; returns the maps."""
        deformed, table = self._affines(pose)
        moving = self._moving
        spots = np.concatenate(
            [deformed[moving].reshape(-1, 2), self._rest[self._tri[moving]].reshape(-1, 2)]
        )
        x0 = max(0, int(np.floor(spots[:, 0].min())) - 3) & ~1
        y0 = max(0, int(np.floor(spots[:, 1].min())) - 3) & ~1
        x1 = min(self.width, int(np.ceil(spots[:, 0].max())) + 4)
        y1 = min(self.height, int(np.ceil(spots[:, 1].max())) + 4)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        # The map is continuous and piecewise affine, so half resolution plus bilinear upsampling
        # loses almost nothing and quarters the per-pixel work.
        half_w, half_h = (x1 - x0 + 1) // 2, (y1 - y0 + 1) // 2
        ids = np.full((half_h, half_w), self._outside, np.int32)
        corners = np.round(((deformed - (x0 + 0.5, y0 + 0.5)) * 0.5) * 16.0).astype(np.int32)  # (M, 3, 2)
        for index in range(len(corners)):
            cv2.fillConvexPoly(ids, corners[index], index, cv2.LINE_8, 4)
        coef = table[ids]  # (h, w, 6)
        gx = (x0 + 0.5 + 2.0 * np.arange(half_w, dtype=np.float32))[None, :]
        gy = (y0 + 0.5 + 2.0 * np.arange(half_h, dtype=np.float32))[:, None]
        map_x = coef[:, :, 0] * gx + coef[:, :, 1] * gy + coef[:, :, 2]
        map_y = coef[:, :, 3] * gx + coef[:, :, 4] * gy + coef[:, :, 5]
        full = (2 * half_w, 2 * half_h)
        map_x = np.asarray(cv2.resize(map_x, full, interpolation=cv2.INTER_LINEAR), np.float32)[
            : y1 - y0, : x1 - x0
        ]
        map_y = np.asarray(cv2.resize(map_y, full, interpolation=cv2.INTER_LINEAR), np.float32)[
            : y1 - y0, : x1 - x0
        ]
        fixed_x, fixed_y = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        head = cv2.remap(self._photo, fixed_x, fixed_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.remap(self._alpha, fixed_x, fixed_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        region = out[y0:y1, x0:x1]
        region[:] = cv2.blendLinear(head, region, alpha, 1.0 - alpha)
        return _Maps(x0, y0, np.asarray(fixed_x, np.int16), np.asarray(fixed_y, np.uint16))

    def _close_lips(self, out: Image, pose: _Pose, maps: _Maps) -> None:
        """Where a photo's parted lips close, show its teeth filled over with lip, in place."""
        assert self._closed_lips is not None
        gap, rest_gap = self._gap(pose)
        closing = float(np.clip((rest_gap - gap) / (0.65 * rest_gap), 0.0, 1.0))
        if closing <= 0.0:
            return
        lips = pose.blink[48:60]
        height, width = maps.fixed_y.shape
        x0 = max(0, int(lips[:, 0].min()) - 2 - maps.x0)
        y0 = max(0, int(lips[:, 1].min()) - 2 - maps.y0)
        x1 = min(width, int(np.ceil(lips[:, 0].max())) + 3 - maps.x0)
        y1 = min(height, int(np.ceil(lips[:, 1].max())) + 3 - maps.y0)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        map1 = np.ascontiguousarray(maps.fixed_x[y0:y1, x0:x1])
        map2 = np.ascontiguousarray(maps.fixed_y[y0:y1, x0:x1])
        source, mask = self._closed_lips
        filled = cv2.remap(source, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        weight = cv2.remap(mask, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) * closing
        region = out[maps.y0 + y0 : maps.y0 + y1, maps.x0 + x0 : maps.x0 + x1]
        region[:] = cv2.blendLinear(filled, region, weight, 1.0 - weight)

    def _draw_mouth(self, out: Image, pose: _Pose, m: F32) -> None:
        """Paint the mouth interior (cavity, tongue, teeth) inside the inner lips, anti-aliased, in place."""
        s = self._s * pose.scale
        points = pose.blink
        inner = points[60:68]
        ex = np.array([math.cos(pose.angle), math.sin(pose.angle)], np.float32)
        ey = np.array([-ex[1], ex[0]], np.float32)
        centre = inner.mean(axis=0)

        def along(chain: F32) -> tuple[F32, F32]:
            """A chain's (u, v) in the rotated mouth frame, u made non-decreasing for interpolation."""
            rel = chain - centre
            return np.maximum.accumulate(rel @ ex).astype(np.float32), (rel @ ey).astype(np.float32)

        up_u, up_v = along(_spline(points[UPPER_CHAIN]))
        lo_u, lo_v = along(_spline(points[LOWER_CHAIN]))
        up_lin_u, up_lin_v = along(points[UPPER_CHAIN])
        lo_lin_u, lo_lin_v = along(points[LOWER_CHAIN])
        gap, rest_gap = self._gap(pose)
        opacity = float(np.clip((gap - rest_gap) / max(1.0, 0.012 * s), 0.0, 1.0))
        # A photo with parted lips: once they are nearly closed, draw the dark line where lips meet.
        crease = 0.0
        if self._closed_lips is not None:
            crease = 0.6 * float(np.clip(1.0 - gap / max(1.0, 0.25 * rest_gap), 0.0, 1.0))
        if opacity <= 0.0 and crease <= 0.0:
            return
        x0 = max(0, int(np.floor(inner[:, 0].min())) - 3)
        y0 = max(0, int(np.floor(inner[:, 1].min())) - 3)
        x1 = min(self.width, int(np.ceil(inner[:, 0].max())) + 4)
        y1 = min(self.height, int(np.ceil(inner[:, 1].max())) + 4)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        gx = np.arange(x0, x1, dtype=np.float32)[None, :] - centre[0]
        gy = np.arange(y0, y1, dtype=np.float32)[:, None] - centre[1]
        u = gx * ex[0] + gy * ex[1]  # (h, w) across the mouth
        v = gx * ey[0] + gy * ey[1]  # (h, w) down
        # The smooth lip curve, widened to the mesh's straight edges wherever they lie outside it, so no
        # sliver of the stretched photo inside the lips is left unpainted.
        smooth_top = np.interp(u, up_u, up_v).astype(np.float32)
        smooth_bottom = np.interp(u, lo_u, lo_v).astype(np.float32)
        top = np.minimum(smooth_top, np.interp(u, up_lin_u, up_lin_v)).astype(np.float32)
        bottom = np.maximum(smooth_bottom, np.interp(u, lo_lin_u, lo_lin_v)).astype(np.float32)
        left, right = float(min(up_u[0], lo_u[0])), float(max(up_u[-1], lo_u[-1]))
        # Coverage reaches a pixel past the lip line: the edge blends into the lip, never into the
        # stretched photo inside it.
        inside = np.clip(
            np.minimum(np.minimum(v - top, bottom - v), np.minimum(u - left, right - u)) + 1.2, 0, 1
        )
        opening = np.maximum(bottom - top, 1.0)
        depth = np.clip((v - top) / opening, 0.0, 1.0)
        across = (u - 0.5 * (left + right)) / max(1.0, 0.5 * (right - left))  # -1..1 corner to corner

        def paint(colour: F32, cover: F32, tone: F32, shade: F32) -> None:
            """Lay a shaded colour over ``colour`` (h, w, 3) with coverage ``cover`` (h, w), in place."""
            colour += cover[:, :, None] * (tone * shade[:, :, None] - colour)

        colour = self._cavity * ((1.0 - 0.5 * across**2) * (0.7 + 0.3 * depth))[:, :, None]  # (h, w, 3)
        # Tongue: a low dome behind the lower lip, once the mouth is open enough to see it.
        dome = np.clip(1.0 - (across / 0.8) ** 2, 0.0, 1.0)
        tongue_top = bottom - 0.45 * opening * dome
        seen = float(np.clip((float(np.mean(opening)) - 0.025 * s) / (0.03 * s), 0.0, 1.0))
        paint(
            colour,
            np.clip(v - tongue_top + 0.5, 0.0, 1.0) * seen * (dome > 0),
            self._tongue,
            0.5 + 0.4 * np.clip((v - tongue_top) / max(1.0, 0.04 * s), 0.0, 1.0),
        )
        # Teeth sit on the skull: their line moves with the head, not with the lips.
        edge_u, edge_v = along(self._head(self._teeth_edge, m, self._teeth_attributes))
        edge = np.interp(u, edge_u, edge_v).astype(np.float32)
        teeth_centre = 0.5 * (float(edge_u[0]) + float(edge_u[-1]))
        half_width = self._teeth_half_width * pose.scale
        span = (u - teeth_centre) / max(half_width, 1.0)  # -1..1 across the visible teeth
        side = np.clip((1.0 - np.abs(span)) * half_width + 0.5, 0.0, 1.0)
        toward_edge = np.clip((v - top) / np.maximum(edge - top, 1.0), 0.0, 1.0)
        seams = np.ones_like(span)
        for mark in (0.0, 0.3, -0.3, 0.56, -0.56, 0.78, -0.78):  # the gaps between teeth, darkest at the edge
            seams *= 1.0 - 0.16 * np.exp(-((((span - mark) * half_width) / 0.8) ** 2))
        lower_height = 0.045 * s * max(float(m[mo.INDEX["lower_lip_down"]]), 0.0)
        if lower_height > 0.5:
            # The lower teeth's top is a gentle arch on the jaw, level with the lower lip's middle.
            middle = float(np.interp(teeth_centre, lo_u, lo_v))
            arch = middle - lower_height + 0.25 * lower_height * span**2
            cover = np.clip(v - arch + 0.5, 0.0, 1.0) * np.clip(
                (0.75 - np.abs(span)) * half_width + 0.5, 0, 1
            )
            paint(colour, cover, self._enamel, 0.8 * (1.0 - 0.5 * span**2) * seams)
        upper = np.clip(edge - v + 0.5, 0.0, 1.0) * np.clip(v - top + 1.2, 0.0, 1.0) * side
        lip_shadow = 0.72 + 0.28 * np.clip((v - top) / max(1.0, 0.015 * s), 0.0, 1.0)
        rim = 1.0 - 0.1 * np.clip(v - edge + 1.5, 0.0, 1.0)  # a slightly darker, translucent biting edge
        seams = 1.0 - (1.0 - seams) * (0.4 + 0.6 * toward_edge)
        gum = np.clip((edge - 0.055 * s) - v + 0.5, 0.0, 1.0)[:, :, None]  # a lip raised past the teeth
        tone = self._enamel + gum * (self._gum - self._enamel)  # (h, w, 3)
        shade = lip_shadow * rim * (1.0 - 0.45 * span**2) * seams
        colour += upper[:, :, None] * (tone * shade[:, :, None] - colour)

        weight = (inside * opacity)[:, :, None]
        region = out[y0:y1, x0:x1]
        result = region + weight * (colour - region)
        if crease > 0.0:
            ends = np.minimum(u - left, right - u)
            line = np.clip(np.minimum(np.minimum(v - smooth_top, smooth_bottom - v), ends) + 1.0, 0.0, 1.0)
            result += (line * crease * (1.0 - opacity))[:, :, None] * (self._crease - result)
        region[:] = np.clip(result + 0.5, 0, 255).astype(np.uint8)
