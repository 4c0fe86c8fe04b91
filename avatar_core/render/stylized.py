"""The stylized renderer: a procedurally drawn, softly shaded 2D face (no real person's likeness).

The picture is a stack of layers with parallax: a static background; shoulders that barely move; the
neck a little; back hair, face and front hair more; the features (eyes, brows, nose, mouth) most,
projected from a shallow 3D rig so that a head turn foreshortens them. The static layers are painted
once at construction (supersampled, with blurred-mask shading) and kept as premultiplied sprites; each
frame warps them on their own region with ``cv2.warpAffine`` and draws the features with anti-aliased
OpenCV polygons at sub-pixel precision. The jaw is the one non-rigid part: ``jaw_open`` drops the chin
through a smooth displacement field, resampled with ``cv2.remap`` on the lower face's region only, so the
painted skin, its edge shading and the chin's shadow on the neck all move together, seamlessly.

Geometry is written on a 512x512 reference canvas ("ref" units, x right, y down) and mapped to the
output by one scale and offset, so every size draws the same picture. Feature geometry is written in
head-local ref units: origin between the eyes, x right, y down, z toward the camera.

Letters in shape comments: N points, H/W image rows/columns (output pixels unless noted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from avatar_core.config import StylizedFace
from avatar_core.motion import INDEX, MOTION_DIM, NEUTRAL, clip
from avatar_core.render import canvas
from avatar_core.render.base import Image, Points
from avatar_core.render.canvas import ControlPoints

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
FArr = npt.NDArray[np.floating[Any]]  # shading maps: float32 or float64
U8 = npt.NDArray[np.uint8]

# ---------------------------------------------------------------------------------------------------
# Reference geometry and rig constants
# ---------------------------------------------------------------------------------------------------

REF = 512.0
CX = 256.0  # the avatar's vertical centre line
HEAD_C = np.array([CX, 236.0])  # head-local origin: between the eyes
FACE_CY, FACE_B, FACE_A = 229.0, 117.0, 92.0  # face centre, half height (skull top to chin), half width
FACE_H = 2.0 * FACE_B  # head_x/y/z are fractions of this
PIVOT = np.array([CX, 350.0])  # roll and scale pivot: the top of the neck, just behind the chin
NECK_BASE = np.array([CX, 430.0])

# Parallax: how far each layer sits in front of the yaw/pitch axis (ref units). The features lie on a
# shallow ellipsoid (depth Z_FEAT at the centre) so the near eye narrows and the far one widens.
Z_FEAT, SURF_RX, SURF_RY = 45.0, 105.0, 190.0
Z_FACE, Z_BACK = 16.0, 6.0
PITCH_DEPTH = 0.7  # a nod moves features less than a turn does; keeps brows clear of the fringe
SQUASH = 0.35  # how much of cos(angle) foreshortening the flat layers get
NOD_DROP = 10.0  # the head also sinks a little on a nod (it pivots about the neck, not its centre)
Z_SCALE = 0.5  # head_z = 0.2 face heights toward the camera -> 10% larger

EYE_DX, EYE_HW = 40.0, 18.5  # eye centre offset and half width
LID_UP, LID_LOW = 10.8, 6.0  # open upper / lower lid heights above / below the corner line
IRIS_R = 9.4
BROW_Y = -30.0
NOSE_TIP_Y = 42.0
MOUTH_Y = 70.0
MOUTH_HW = 25.0  # neutral mouth half width
TEETH_HW = 18.5
JAW_LIP_UP, JAW_LIP_DOWN = 9.5, 36.0  # how far jaw_open = 1 parts the inner lips (centre, up / down)

# The jaw: jaw_open drops the chin and the lower face outline with it. A smooth vertical displacement in
# the face layer's rest frame (ref units) moves the painted skin, its edge shading and the chin's shadow
# on the neck; the lower lip and teeth, drawn per frame, drop with it (and further: the lips part too).
CHIN_Y = FACE_CY + FACE_B
CHIN_DROP = 18.0  # ref units the chin falls at jaw_open = 1: 7.7% of the face height
JAW_X = 1.3  # the drop fades sideways to zero this many face half widths out (at the ears)
JAW_RAMP = (288.0, 350.0)  # rest rows over which it grows, from under the nose to the chin...
JAW_FADE = (CHIN_Y + CHIN_DROP + 3.0, CHIN_Y + CHIN_DROP + 33.0)  # ...and fades again down the neck
JAW_STEP = 3.0  # ref units between samples of the field, at most 3 px (it is smooth: bilinear between)
JAW_TABLE = 33  # chin drops at which the jaw landmarks are solved once, at construction

# Sample grids; they contain the parameters of the iBUG landmarks exactly (see StylizedRenderer._rig).
EYE_U = np.linspace(-1.0, 1.0, 13)  # inner (-1) -> outer (+1) corner, step 1/6
BROW_V = np.linspace(0.0, 1.0, 9)  # inner (0) -> outer (1) end, step 1/8
MOUTH_U = np.linspace(-1.0, 1.0, 25)  # image-left (-1) -> image-right (+1) corner, step 1/12
_ANGLES = np.linspace(0, 2 * np.pi, 24, endpoint=False)
CIRCLE = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], 1)  # (24, 2) unit circle for irises

_F = INDEX  # short alias for field indices in the hot path

# Face outlines, right half from the skull top (0, -1) to the chin (0, 1): (x / half width, v).
# fmt: off
SKULL: ControlPoints = [(0, -1), (0.4, -0.95), (0.72, -0.8), (0.92, -0.58)]  # shared dome (seen when bald)
FACE_SHAPES: dict[str, ControlPoints] = {
    "oval": [*SKULL, (1.0, -0.2), (0.98, 0.15), (0.89, 0.45), (0.68, 0.74), (0.37, 0.94), (0, 1)],
    "round": [*SKULL, (1.03, -0.18), (1.03, 0.2), (0.96, 0.5), (0.78, 0.78), (0.43, 0.96), (0, 1)],
    "square": [*SKULL, (1.0, -0.2), (1.0, 0.22), (0.98, 0.56), (0.86, 0.82), (0.47, 0.975), (0, 1)],
    "heart": [*SKULL, (1.04, -0.2), (0.97, 0.12), (0.83, 0.42), (0.6, 0.72), (0.3, 0.93), (0, 1)],
}
# fmt: on


@dataclass(frozen=True)
class _HairStyle:
    """Hair as closed outlines in (x / face half width, y ref): behind the head and over the face."""

    back: tuple[ControlPoints, ...]
    front: tuple[ControlPoints, ...]
    strands: tuple[ControlPoints, ...]  # thin darker curves following the flow, over the front hair
    sheen: ControlPoints  # the highlight band across the crown
    ears: bool


def _mirror_strands(strands: Sequence[ControlPoints]) -> tuple[ControlPoints, ...]:
    return tuple(strands) + tuple([(-x, y) for x, y in s] for s in strands)


# Outlines run round the shape; the front ones trace the outer edge first, then the hairline back.
# fmt: off
HAIR_STYLES: dict[str, _HairStyle] = {
    "short": _HairStyle(
        back=([(-1.05, 250), (-1.14, 205), (-1.12, 148), (-0.86, 100), (-0.42, 78), (0, 74), (0.42, 78),
               (0.86, 100), (1.12, 148), (1.14, 205), (1.05, 250), (0.5, 262), (-0.5, 262)],),
        front=([(-0.99, 214), (-1.04, 168), (-0.93, 120), (-0.56, 90), (0, 82), (0.56, 88), (0.95, 118),
                (1.04, 168), (0.99, 214), (0.95, 196), (0.9, 173), (0.72, 159), (0.46, 153), (0.2, 151),
                (-0.1, 147), (-0.42, 141), (-0.7, 150), (-0.9, 172), (-0.96, 198)],),
        strands=([(-0.42, 141), (-0.3, 116), (0.0, 98)], [(-0.1, 147), (0.08, 122), (0.36, 104)],
                 [(0.2, 151), (0.44, 128), (0.7, 118)], [(0.46, 153), (0.7, 140), (0.9, 146)],
                 [(-0.7, 150), (-0.7, 124), (-0.5, 102)]),
        sheen=[(-0.6, 118), (-0.2, 100), (0.22, 98), (0.6, 108)],
        ears=True,
    ),
    "bob": _HairStyle(
        back=([(0, 70), (0.7, 82), (1.12, 126), (1.3, 200), (1.31, 270), (1.27, 326), (1.17, 355),
               (0.98, 366), (0.6, 362), (0, 356), (-0.6, 362), (-0.98, 366), (-1.17, 355), (-1.27, 326),
               (-1.31, 270), (-1.3, 200), (-1.12, 126), (-0.7, 82)],),
        front=([(-1.06, 354), (-1.2, 328), (-1.23, 270), (-1.21, 200), (-1.08, 132), (-0.66, 92), (0, 80),
                (0.66, 92), (1.08, 132), (1.21, 200), (1.23, 270), (1.2, 328), (1.06, 354), (0.97, 350),
                (0.96, 310), (0.95, 250), (0.9, 200), (0.76, 174), (0.5, 156), (0.34, 150), (0.1, 164),
                (-0.22, 178), (-0.55, 188), (-0.82, 196), (-0.95, 240), (-0.97, 300), (-1.0, 352)],),
        strands=([(0.34, 100), (0.1, 130), (-0.3, 172)], [(0.24, 98), (-0.22, 126), (-0.7, 190)],
                 [(0.42, 98), (0.64, 128), (0.84, 180)], [(0.34, 150), (0.33, 124), (0.3, 98)],
                 [(-1.09, 200), (-1.11, 270), (-1.07, 336)], [(1.09, 200), (1.11, 270), (1.07, 336)],
                 [(-0.9, 150), (-1.03, 210), (-1.04, 290)], [(0.9, 160), (1.02, 220), (1.02, 300)]),
        sheen=[(-0.78, 132), (-0.34, 100), (0.2, 94), (0.7, 112)],
        ears=False,
    ),
    "long": _HairStyle(
        back=([(0, 70), (0.7, 82), (1.17, 126), (1.38, 240), (1.42, 380), (1.34, 466), (1.1, 486), (0, 480),
               (-1.1, 486), (-1.34, 466), (-1.42, 380), (-1.38, 240), (-1.17, 126), (-0.7, 82)],),
        front=([(-1.16, 472), (-1.3, 400), (-1.3, 300), (-1.26, 210), (-1.07, 134), (-0.65, 93), (0, 82),
                (0.65, 93), (1.07, 134), (1.26, 210), (1.3, 300), (1.3, 400), (1.16, 472), (0.98, 474),
                (0.86, 420), (0.86, 360), (0.95, 290), (0.93, 230), (0.86, 190), (0.64, 166), (0.34, 153),
                (0.0, 150), (-0.34, 153), (-0.64, 166), (-0.86, 190), (-0.93, 230), (-0.95, 290),
                (-0.86, 360), (-0.86, 420), (-0.98, 474)],),
        strands=_mirror_strands([[(0.02, 150), (0.3, 110), (0.7, 108)],
                                 [(0.34, 153), (0.7, 150), (0.98, 190)],
                                 [(1.1, 210), (1.12, 320), (1.06, 450)],
                                 [(0.96, 300), (1.0, 380), (1.1, 462)]]),
        sheen=[(-0.72, 130), (-0.3, 100), (0.3, 100), (0.72, 130)],
        ears=False,
    ),
    "bun": _HairStyle(
        back=([(-1.05, 246), (-1.1, 198), (-1.06, 140), (-0.74, 98), (0, 82), (0.74, 98), (1.06, 140),
               (1.1, 198), (1.05, 246), (0, 258)],
              [(0, 28), (0.32, 38), (0.44, 66), (0.34, 96), (0, 106), (-0.34, 96), (-0.44, 66), (-0.32, 38)]),
        front=([(-0.99, 212), (-1.03, 165), (-0.88, 118), (-0.5, 96), (0, 89), (0.5, 96), (0.88, 118),
                (1.03, 165), (0.99, 212), (0.94, 190), (0.86, 166), (0.6, 149), (0.2, 143), (-0.2, 143),
                (-0.6, 149), (-0.86, 166), (-0.94, 190)],),
        strands=_mirror_strands([[(0.6, 149), (0.44, 116), (0.18, 95)],
                                 [(0.22, 143), (0.14, 112), (0.04, 92)],
                                 [(0.86, 166), (0.72, 126), (0.4, 100)]]),
        sheen=[(-0.52, 118), (-0.2, 104), (0.2, 104), (0.52, 118)],
        ears=True,
    ),
    "bald": _HairStyle(back=(), front=(), strands=(), sheen=[], ears=True),
}
# fmt: on

# ---------------------------------------------------------------------------------------------------
# Painting the static layers
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Palette:
    """Every colour the renderer uses (RGB floats), derived from the persona's few."""

    skin: F64
    skin_shadow: F64
    skin_light: F64
    hair: F64
    hair_shadow: F64
    hair_light: F64
    brow: F64
    lash: F64
    iris: F64
    iris_dark: F64
    iris_light: F64
    pupil: F64
    sclera: F64
    sclera_shadow: F64
    lips: F64
    lips_upper: F64
    lips_dark: F64
    lips_light: F64
    teeth: F64
    teeth_shade: F64
    cavity: F64
    tongue: F64
    shirt: F64
    background: F64
    blush: F64

    @staticmethod
    def of(face: StylizedFace) -> _Palette:
        skin, hair, lips = canvas.color(face.skin), canvas.color(face.hair), canvas.color(face.lips)
        eyes = canvas.color(face.eyes)
        # Shadows shift warm (toward red) rather than grey, as skin does under soft light.
        skin_shadow = skin * np.array([0.78, 0.64, 0.62])
        return _Palette(
            skin=skin,
            skin_shadow=skin_shadow,
            skin_light=canvas.mix(skin, (255, 248, 240), 0.35),
            hair=hair,
            hair_shadow=hair * 0.62,
            hair_light=canvas.mix(hair, (255, 236, 210), 0.32),
            brow=canvas.mix(hair * 0.85, skin_shadow, 0.15),
            lash=canvas.mix(hair, (22, 16, 14), 0.75),
            iris=eyes,
            iris_dark=eyes * 0.55,
            iris_light=canvas.mix(eyes, (255, 255, 255), 0.25),
            pupil=np.array([20.0, 16.0, 18.0]),
            sclera=np.array([248.0, 245.0, 242.0]),
            sclera_shadow=canvas.mix(np.array([248.0, 245.0, 242.0]), skin_shadow, 0.45),
            lips=lips,
            lips_upper=lips * 0.86,
            lips_dark=lips * 0.55,
            lips_light=canvas.mix(lips, (255, 240, 235), 0.35),
            teeth=np.array([246.0, 243.0, 236.0]),
            teeth_shade=np.array([196.0, 188.0, 184.0]),
            cavity=np.array([52.0, 20.0, 27.0]),
            tongue=np.array([182.0, 84.0, 92.0]),
            shirt=canvas.color(face.shirt),
            background=canvas.color(face.background),
            blush=canvas.mix(skin, lips * np.array([1.1, 0.85, 0.9]), 0.55),
        )


def _face_outline(face: StylizedFace) -> F64:
    """The skin outline (N, 2) in ref units, closed, skull top to chin."""
    a = FACE_A * face.face_width
    half = FACE_SHAPES[face.face_shape]
    right = [(CX + x * a, FACE_CY + v * FACE_B) for x, v in half]
    left = [(CX - x * a, FACE_CY + v * FACE_B) for x, v in half[-2:0:-1]]
    return canvas.catmull_rom(right + left, closed=True, per_segment=12)


def _hair_points(points: ControlPoints, a: float) -> F64:
    return np.array([(CX + x * a, y) for x, y in points], np.float64)


def _paint_background(view: canvas.View, pal: _Palette, width: int, height: int) -> U8:
    """A soft vertical gradient with a faint halo behind the head."""
    ys = ((np.arange(height) + 0.5 - view.oy) / view.scale)[:, None]  # (H, 1) ref
    xs = ((np.arange(width) + 0.5 - view.ox) / view.scale)[None, :]  # (1, W) ref
    light = 1.05 - 0.12 * np.clip(ys / REF, 0, 1.3)  # (H, 1)
    halo = 0.05 * np.exp(-(((xs - CX) / 190.0) ** 2 + ((ys - 220.0) / 190.0) ** 2))  # (H, W)
    img = pal.background[None, None, :] * (light + halo)[..., None]  # (H, W, 3)
    out: U8 = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out


def _paint_torso(view: canvas.View, pal: _Palette, bottom_ref: float) -> canvas.Sprite:
    """Shoulders and shirt with a scoop neckline; the neck layer shows through the neckline."""
    p = canvas.Painter(view, (CX - 250, 380, CX + 250, bottom_ref))
    right = [(50, 389), (100, 403), (160, 428), (205, 470), (226, 536), (232, bottom_ref + 20)]
    outline = canvas.catmull_rom(
        [(CX + x, y) for x, y in right] + [(CX - x, y) for x, y in right[::-1]], False
    )
    neckline = canvas.ellipse(CX, 386, 50, 54, 64)
    shirt = p.cover(outline) * (1.0 - p.cover(neckline))
    p.paint(shirt, pal.shirt)
    _, y = p.grid()
    # Top light: shoulders catch light, the chest below the neckline and the outer arms fall off.
    p.tint(shirt * np.clip((y - 400) / 160, 0, 1) * 0.12, pal.shirt * 0.55)
    edge = shirt * np.clip(1.0 - (p.blur(shirt, 14) - 0.5) * 2.2, 0, 1)
    p.tint(edge * 0.35, pal.shirt * 0.5)
    p.tint(shirt * p.blur(p.line(canvas.ellipse(CX, 396, 60, 62, 64)[32:], 4), 6) * 0.35, pal.shirt * 0.45)
    collar = p.cover(canvas.ellipse(CX, 386, 56, 60, 64)) * (1.0 - p.cover(neckline)) * shirt
    p.paint(collar, canvas.mix(pal.shirt, pal.shirt * 0.7, 0.5))
    p.paint(
        collar * p.line(canvas.ellipse(CX, 386, 53.5, 57.5, 64)[6:27], 0.6),
        canvas.mix(pal.shirt, (255, 255, 255), 0.15),
    )
    for side in (-1, 1):
        fold = np.array([(CX + side * 150, 462), (CX + side * 160, 490), (CX + side * 158, 520)])
        p.tint(shirt * p.blur(p.line(canvas.catmull_rom(fold, False), 2.0), 3) * 0.3, pal.shirt * 0.5)
    return p.sprite()


def _paint_neck(view: canvas.View, pal: _Palette, face_outline: F64) -> canvas.Sprite:
    """Neck and upper chest, shaded, with the chin's shadow at the top."""
    p = canvas.Painter(view, (CX - 125, 280, CX + 125, 490))
    half = [(37, 292), (36, 330), (37, 366), (42, 384), (64, 402), (104, 432), (118, 486)]
    outline = canvas.catmull_rom([(CX + x, y) for x, y in half] + [(CX - x, y) for x, y in half[::-1]], True)
    skin = p.cover(outline)
    p.paint(skin, pal.skin * 0.96)
    x, y = p.grid()
    side = np.clip(np.abs(x - CX) / 40.0, 0, 1) ** 3 * np.clip((400 - y) / 30, 0, 1)
    p.tint(skin * side * 0.35, pal.skin_shadow)
    chin_shadow = p.blur(p.shift(p.cover(face_outline), 0, 13), 5)
    p.tint(skin * chin_shadow * 0.55, pal.skin_shadow)
    for s in (-1, 1):
        bone = np.array([(CX + s * 14, 424), (CX + s * 34, 419), (CX + s * 58, 421)])
        p.tint(skin * p.blur(p.line(canvas.catmull_rom(bone, False), 1.2), 1.6) * 0.25, pal.skin_shadow)
    p.tint(skin * p.blur(p.cover(canvas.ellipse(CX, 446, 30, 10)), 6) * 0.18, pal.skin_light)
    return p.sprite()


def _paint_hair(
    p: canvas.Painter,
    pal: _Palette,
    polygons: Sequence[F64],
    style: _HairStyle,
    a: float,
    detail: bool,
    darken: float,
) -> F32:
    """Paint hair outlines with edge shading, a sheen band and strands; returns the hair coverage."""
    hair = p.cover(*polygons)
    p.paint(hair, pal.hair)
    inner = p.blur(hair, 7)
    p.tint(hair * np.clip(1.0 - (inner - 0.5) * 2.0, 0, 1) * 0.45, pal.hair_shadow)
    if darken > 0:
        p.tint(hair * darken, pal.hair_shadow)
    if detail and len(style.sheen) > 1:
        sheen = p.blur(p.line(canvas.catmull_rom(_hair_points(style.sheen, a), False), 4.5), 3)
        p.tint(hair * inner * sheen * 0.7, pal.hair_light)
        for strand in style.strands:
            curve = canvas.catmull_rom(_hair_points(strand, a), False)
            taper = np.sin(np.linspace(0.15, np.pi - 0.15, len(curve))) * 0.9
            p.tint(hair * p.blur(p.line(curve, taper), 0.5) * 0.45, pal.hair_shadow)
            p.tint(
                hair * p.blur(p.line(curve + np.array([2.2, 0.8]), taper * 0.6), 0.5) * 0.25, pal.hair_light
            )
    return hair


def _ear_outline(side: int, a: float) -> F64:
    pts = [(-6, 224), (4, 219), (11, 229), (12.5, 249), (8.5, 268), (2, 280), (-7, 276)]
    return canvas.catmull_rom([(CX + side * (a + dx), y) for dx, y in pts], closed=True)


def _paint_back(view: canvas.View, pal: _Palette, face: StylizedFace, face_outline: F64) -> canvas.Sprite:
    """Hair behind the head, and the ears; in the shadow the face casts."""
    a = FACE_A * face.face_width
    style = HAIR_STYLES[face.hair_style]
    bottom = 500.0 if face.hair_style == "long" else 380.0
    p = canvas.Painter(view, (CX - 1.5 * a - 12, 20, CX + 1.5 * a + 12, bottom))
    if style.back:
        _paint_hair(
            p,
            pal,
            [canvas.catmull_rom(_hair_points(b, a), True) for b in style.back],
            style,
            a,
            detail=False,
            darken=0.12,
        )
        if face.hair_style == "bun":
            bun = [(CX + x * a, y) for x, y in [(-0.28, 44), (0, 36), (0.28, 44)]]
            p.tint(
                p.alpha * p.blur(p.line(canvas.catmull_rom(bun, False), 2.6), 1.2) * 0.6,
                pal.hair_shadow * 0.7,
            )
    # The face throws a soft shadow on whatever is just behind its outline.
    face_shadow = p.blur(p.cover(face_outline), 6)
    p.tint(p.alpha * face_shadow * 0.4, pal.hair_shadow * 0.6)
    if style.ears:
        for side in (-1, 1):
            ear = p.cover(_ear_outline(side, a))
            p.paint(ear, pal.skin)
            p.tint(ear * np.clip(1.0 - (p.blur(ear, 3) - 0.5) * 2, 0, 1) * 0.3, pal.skin_shadow)
            concha = [(CX + side * (a + dx), y) for dx, y in [(1, 232), (6.5, 238), (7, 254), (3, 266)]]
            p.tint(ear * p.blur(p.line(canvas.catmull_rom(concha, False), 1.6), 1.5) * 0.5, pal.skin_shadow)
            p.tint(ear * face_shadow * 0.45, pal.skin_shadow)
    return p.sprite()


def _paint_face(view: canvas.View, pal: _Palette, face: StylizedFace, face_outline: F64) -> canvas.Sprite:
    """Skin with soft shading and blush, and the front hair (fringe, side locks)."""
    a = FACE_A * face.face_width
    style = HAIR_STYLES[face.hair_style]
    bottom = 490.0 if face.hair_style == "long" else 360.0
    p = canvas.Painter(view, (CX - 1.45 * a - 10, 70, CX + 1.45 * a + 10, bottom))
    skin = p.cover(face_outline)
    p.paint(skin, pal.skin)
    x, y = p.grid()
    xn, yn = (x - CX) / a, (y - FACE_CY) / FACE_B
    # Key light from the upper left; the lower right side and jaw turn away from it.
    p.tint(skin * np.clip(0.1 * (xn + 0.6 * yn), 0, 0.16), pal.skin_shadow)
    p.tint(skin * np.clip(-0.12 * (xn + yn), 0, 0.1), pal.skin_light)
    inner = p.blur(skin, 9)
    p.tint(skin * np.clip(1.0 - (inner - 0.5) * 2.2, 0, 1) ** 1.5 * 0.35, pal.skin_shadow)
    lit = p.blur(p.cover(canvas.ellipse(CX - 0.48 * a, 258, 17, 12)), 7) + p.blur(
        p.cover(canvas.ellipse(CX, 334, 9, 5)), 4
    )
    p.tint(skin * lit * 0.35, pal.skin_light)
    for side in (-1, 1):
        cheek = p.blur(p.cover(canvas.ellipse(CX + side * 0.6 * a, 282, 17, 10)), 7)
        p.tint(skin * cheek * 0.32, pal.blush)
        socket = p.blur(p.cover(canvas.ellipse(CX + side * 22, 240, 6, 9)), 5)
        p.tint(skin * socket * 0.2, pal.skin_shadow)
    philtrum = p.blur(p.cover(canvas.ellipse(CX, 292, 4.5, 6)), 2.5)
    p.tint(skin * philtrum * 0.15, pal.skin_shadow)
    chin_groove = p.blur(
        p.line(canvas.catmull_rom([(CX - 12, 326), (CX, 324), (CX + 12, 326)], False), 2.0), 2.5
    )
    p.tint(skin * chin_groove * 0.2, pal.skin_shadow)
    if not style.front:  # bald: the crown catches the key light
        p.tint(skin * p.blur(p.cover(canvas.ellipse(CX - 0.3 * a, 134, 26, 11)), 7) * 0.45, pal.skin_light)
    else:
        polygons = [canvas.catmull_rom(_hair_points(f, a), True) for f in style.front]
        # The fringe casts a soft shadow on the forehead, a little below and to the right.
        shadow = p.blur(p.shift(p.cover(*polygons), 2, 5), 4)
        p.tint(skin * shadow * 0.5, pal.skin_shadow)
        _paint_hair(p, pal, polygons, style, a, detail=True, darken=0.0)
    return p.sprite()


def _paint_nose(view: canvas.View, pal: _Palette) -> canvas.Sprite:
    """The nose as soft shading around the tip (at NOSE_TIP_Y): bridge side, underside, nostrils."""
    tip = HEAD_C + np.array([0.0, NOSE_TIP_Y])
    p = canvas.Painter(view, (tip[0] - 22, tip[1] - 40, tip[0] + 22, tip[1] + 16))
    shape = np.zeros(p.alpha.shape, np.float32)
    bridge = canvas.catmull_rom(tip + np.array([(3.5, -36), (5.5, -20), (7.5, -6), (7.0, 3)]), False)
    shape += p.blur(p.line(bridge, np.linspace(0.6, 2.2, len(bridge))), 2.2) * 0.55
    shape += p.blur(p.cover(canvas.ellipse(tip[0] + 0.5, tip[1] + 7.0, 9.5, 3.2)), 2.0) * 0.75
    for side in (-1, 1):
        wing = canvas.catmull_rom(
            tip + np.array([(side * 7, -3), (side * 10.5, 2.5), (side * 8, 7.5), (side * 3.5, 8.5)]), False
        )
        shape += p.blur(p.line(wing, 0.9), 0.8) * (0.8 if side > 0 else 0.6)
    p.paint(np.clip(shape, 0, 1), pal.skin_shadow * 0.9, 0.55)
    p.paint(p.blur(p.cover(canvas.ellipse(tip[0] - 2.0, tip[1] - 1.0, 3.5, 2.6)), 1.8), pal.skin_light, 0.7)
    return p.sprite()


# ---------------------------------------------------------------------------------------------------
# The per-frame rig: head pose, feature geometry, landmarks
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pose:
    """Where the head and each layer are this frame."""

    cos_yaw: float
    sin_yaw: float
    cos_pitch: float
    sin_pitch: float
    head_px: F64  # (3, 3) head-global ref -> output pixels, after roll/scale/translation
    unit: float  # output pixels per head-local ref unit
    face_px: F64  # (3, 3) pixel-space layer motions (rest -> now)
    back_px: F64
    neck_px: F64
    torso: tuple[int, int]


@dataclass(frozen=True)
class _Eye:
    upper: F64  # (13, 2) pixels, inner -> outer corner
    lower: F64  # (13, 2)
    circles: F64  # (6, 24, 2): limbal ring, iris, iris light, pupil, highlight, small highlight
    crease: F64  # (N, 2)
    opening: float  # largest lid gap, ref units
    closure: float  # blink amount


@dataclass(frozen=True)
class _Mouth:
    upper_outer: F64  # (25, 2) pixels, image-left -> image-right corner
    upper_inner: F64
    lower_inner: F64
    lower_outer: F64
    cavity: F64 | None  # (50, 2) slightly enlarged opening, or None when sealed
    teeth_upper: tuple[F64, F64]  # (shade band, bright band) polygons
    teeth_lower: tuple[F64, F64]
    tongue: F64
    gap: float  # centre opening, ref units
    highlight: F64
    under_shadow: F64
    corners: tuple[F64, F64]


@dataclass(frozen=True)
class _Rig:
    pose: _Pose
    eyes: tuple[_Eye, _Eye]  # image-left (subject's right), image-right
    brows: tuple[F64, F64]  # filled brow outlines in pixels
    nose_px: F64  # (3, 3) nose sprite motion
    mouth: _Mouth
    chin_drop: float  # ref units, in the face layer's rest frame
    landmarks: F32  # (68, 2)


def _depth(x: F64, y: F64) -> F64:
    """Depth of the feature surface at head-local (x, y): a shallow ellipsoid."""
    return Z_FEAT * np.sqrt(np.maximum(0.15, 1.0 - (x / SURF_RX) ** 2 - (y / SURF_RY) ** 2))


def _bump(u: F64, power: float, skew: float) -> F64:
    return np.maximum(1.0 - u * u, 0.0) ** power * (1.0 + skew * u)


def _smoothstep(t: FArr) -> FArr:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _jaw_rows(y: FArr) -> FArr:
    """How much of the jaw's drop reaches rest row y (ref): 0 above the mouth, 1 at the chin, 0 down the
    neck. The drop is a backward map: the pixel at y shows what rests at y - drop * weight."""
    grow = _smoothstep((y - JAW_RAMP[0]) * (1.0 / (JAW_RAMP[1] - JAW_RAMP[0])))
    fade = _smoothstep((y - JAW_FADE[0]) * (1.0 / (JAW_FADE[1] - JAW_FADE[0])))
    return grow * (1.0 - fade)


def _jaw_columns(x: FArr, a: float) -> FArr:
    """The sideways falloff of the jaw's drop: 1 on the centre line, 0 at JAW_X face half widths."""
    u = (x - CX) * (1.0 / (JAW_X * a))
    w = np.clip(1.0 - u * u, 0.0, 1.0)
    return w * w  # smooth to zero: no kink for the coarse field samples to round off


def _jaw_forward(points: F64, drop: float, a: float) -> F64:
    """Rest points (N, 2) ref -> where the jaw's drop carries them: y' solves y' - d * rows(y') = y.

    The map is monotonic (its slope stays above 1 - 1.5 * CHIN_DROP / 30 > 0), so Newton converges."""
    d = drop * _jaw_columns(points[:, 0], a)  # (N,)
    y0 = points[:, 1]
    y = y0 + d * _jaw_rows(y0)
    for _ in range(8):
        eps = 1e-3
        f = y - d * _jaw_rows(y) - y0
        slope = 1.0 - d * (_jaw_rows(y + eps) - _jaw_rows(y - eps)) / (2 * eps)
        y = y - f / np.maximum(slope, 0.1)
    return np.stack([points[:, 0], y], 1)


# ---------------------------------------------------------------------------------------------------
# The renderer
# ---------------------------------------------------------------------------------------------------


class StylizedRenderer:
    """The default persona's face, drawn procedurally: ``render`` for frames, ``landmarks`` for metrics."""

    def __init__(self, face: StylizedFace, width: int = 512, height: int = 512) -> None:
        self.face = face
        self.width = int(width)
        self.height = int(height)
        scale = min(self.width, self.height) / REF
        self.view = canvas.View(scale, (self.width - REF * scale) / 2.0, (self.height - REF * scale) / 2.0)
        self._to_px, self._to_ref = self.view.to_px, self.view.to_ref
        pal = _Palette.of(face)
        self.pal = pal
        outline = _face_outline(face)
        bottom_ref = (self.height - self.view.oy) / scale + 4.0
        self._background = _paint_background(self.view, pal, self.width, self.height)
        self._torso = _paint_torso(self.view, pal, bottom_ref)
        self._neck = _paint_neck(self.view, pal, outline)
        self._back = _paint_back(self.view, pal, face, outline)
        self._face = _paint_face(self.view, pal, face, outline)
        self._nose = _paint_nose(self.view, pal)
        self._jaw_a = FACE_A * face.face_width
        # Only hair that hangs past the mouth (bob, long) lies under the jaw's drop.
        first = math.ceil(self.view.oy + scale * JAW_RAMP[0]) - self._back.y0
        self._back_in_jaw = bool((self._back.inv_alpha[max(first, 0) :] < 255).any())
        jaw_rest = self._jaw_points(outline)  # (17, 2) ref
        # Where the jaw's drop carries the jaw landmarks, for JAW_TABLE drops; a frame interpolates.
        self._jaw_table = np.stack(
            [_jaw_forward(jaw_rest, d, self._jaw_a) for d in np.linspace(0.0, CHIN_DROP, JAW_TABLE)]
        )  # (JAW_TABLE, 17, 2) ref
        c = canvas.tup
        self._c = {name: c(getattr(pal, name)) for name in pal.__dataclass_fields__}

    # -- geometry --------------------------------------------------------------------------------

    @staticmethod
    def _jaw_points(outline: F64) -> F64:
        """iBUG 0-16 on the face outline: eye level, round the chin, back up to eye level."""
        left = outline[outline[:, 0] <= CX]
        left = left[np.argsort(left[:, 1])]
        ys = HEAD_C[1] + (FACE_CY + FACE_B - HEAD_C[1]) * np.sin(np.linspace(0, np.pi / 2, 9))  # (9,)
        xs = np.interp(ys, left[:, 1], left[:, 0])
        xs[-1] = CX
        half = np.stack([xs, ys], 1)  # (9, 2)
        right = half[-2::-1] * (-1.0, 1.0) + (2 * CX, 0.0)
        return np.concatenate([half, right])

    def _pose(self, m: F32) -> _Pose:
        yaw, pitch, roll = float(m[_F["head_yaw"]]), float(m[_F["head_pitch"]]), float(m[_F["head_roll"]])
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        scale = 1.0 + Z_SCALE * float(m[_F["head_z"]])
        tx, ty = float(m[_F["head_x"]]) * FACE_H, float(m[_F["head_y"]]) * FACE_H
        head = (
            canvas.translate(tx, ty)
            @ canvas.about(canvas.rotation(roll, scale), PIVOT)
            @ canvas.translate(0.0, NOD_DROP * sp)
        )

        def flat_layer(z: float) -> F64:
            # A flat card at depth z, turned by yaw/pitch: shifted by z*sin, mildly foreshortened.
            squash = canvas.linear(1.0 - SQUASH * (1.0 - cy), 0.0, 0.0, 1.0 - SQUASH * (1.0 - cp))
            return head @ canvas.translate(z * sy, z * cy * sp * PITCH_DEPTH) @ canvas.about(squash, HEAD_C)

        neck = canvas.translate(0.5 * tx + 4.0 * sy, 0.45 * ty + 3.0 * sp) @ canvas.about(
            canvas.rotation(0.3 * roll, 1.0 + 0.3 * (scale - 1.0)), NECK_BASE
        )
        px, ref = self._to_px, self._to_ref
        return _Pose(
            cos_yaw=cy,
            sin_yaw=sy,
            cos_pitch=cp,
            sin_pitch=sp,
            head_px=px @ head,
            unit=self.view.scale * scale,
            face_px=px @ flat_layer(Z_FACE) @ ref,
            back_px=px @ flat_layer(Z_BACK) @ ref,
            neck_px=px @ neck @ ref,
            torso=(round((0.06 * tx + 2.5 * sy) * self.view.scale), round(0.05 * ty * self.view.scale)),
        )

    @staticmethod
    def _project(pose: _Pose, x: F64, y: F64, z: F64) -> F64:
        """Head-local feature points (N,) x, y, z -> output pixels (N, 2)."""
        x1 = x * pose.cos_yaw + z * pose.sin_yaw
        z1 = z * pose.cos_yaw - x * pose.sin_yaw
        y1 = y * (1.0 - 0.5 * (1.0 - pose.cos_pitch)) + z1 * pose.sin_pitch * PITCH_DEPTH
        m = pose.head_px
        gx, gy = x1 + HEAD_C[0], y1 + HEAD_C[1]
        return np.stack([m[0, 0] * gx + m[0, 1] * gy + m[0, 2], m[1, 0] * gx + m[1, 1] * gy + m[1, 2]], 1)

    def _eye(self, pose: _Pose, m: F32, side: int) -> _Eye:
        """One eye; side -1 is image-left (subject's right), +1 image-right."""
        blink = float(m[_F["blink_r" if side < 0 else "blink_l"]])
        squint = float(m[_F["squint"]])
        gx, gy = float(m[_F["gaze_x"]]), float(m[_F["gaze_y"]])
        u = EYE_U
        corner = 1.0 - 1.25 * (u + 1.0)  # outer corner a little higher: a friendly tilt
        up_bump, low_bump = _bump(u, 0.75, -0.12), _bump(u, 0.9, 0.1)
        closed = corner + 2.5 * low_bump
        up_open = corner - (LID_UP * (1.0 - 0.15 * squint) + 1.5 * gy) * up_bump
        low_open = corner + LID_LOW * (1.0 - 0.55 * squint) * low_bump
        upper = closed + (up_open - closed) * (1.0 - blink)
        lower = closed + (low_open - closed) * (1.0 - blink)
        lx = side * (EYE_DX + u * EYE_HW)
        crease_u = u[1:-1]
        crease_y = corner[1:-1] - (LID_UP + 4.5 - 3.5 * blink) * up_bump[1:-1] - 0.8 * gy
        ix, iy = side * EYE_DX + 7.5 * gx, -1.0 - 4.2 * gy
        radii = np.array([IRIS_R, IRIS_R * 0.86, IRIS_R * 0.55, IRIS_R * 0.42, IRIS_R * 0.24, IRIS_R * 0.1])
        dx = np.array([0, 0, 0, 0, -0.36, 0.4]) * IRIS_R
        dy = np.array([0, 0, 0.28, 0, -0.42, 0.35]) * IRIS_R
        cx = (ix + dx[:, None] + radii[:, None] * CIRCLE[None, :, 0]).ravel()  # (6*24,)
        cy = (iy + dy[:, None] + radii[:, None] * CIRCLE[None, :, 1]).ravel()
        xs = np.concatenate([lx, lx, side * (EYE_DX + crease_u * EYE_HW), cx])
        ys = np.concatenate([upper, lower, crease_y, cy])
        zs = _depth(xs, ys) - 2.0
        zs[-cx.size :] = float(_depth(np.array([ix]), np.array([iy]))[0]) + 1.5  # the cornea bulges a little
        pts = self._project(pose, xs, ys, zs)
        n, nc = len(u), len(crease_u)
        return _Eye(
            upper=pts[:n],
            lower=pts[n : 2 * n],
            crease=pts[2 * n : 2 * n + nc],
            circles=pts[2 * n + nc :].reshape(6, -1, 2),
            opening=float(np.max(lower - upper)),
            closure=blink,
        )

    def _brow(self, pose: _Pose, m: F32, side: int) -> tuple[F64, F64]:
        """One brow: (filled outline, centre line at BROW_V) in pixels."""
        up = float(m[_F["brow_up_r" if side < 0 else "brow_up_l"]])
        down = float(m[_F["brow_down"]])
        v = BROW_V
        x = 14.0 + 50.0 * v - 5.0 * down * (1.0 - v)
        y = BROW_Y - 7.0 * np.sin(np.pi * v**0.85) + 2.5 * v
        y = y - 8.0 * up * (0.75 + 0.35 * np.sin(np.pi * v)) + 5.0 * down * (1.0 - 0.55 * v)
        half = 0.45 + 2.3 * (1.0 - v) ** 0.6 + 0.3 * np.sin(np.pi * v)
        xs, ys = side * x, y
        centre = self._project(pose, xs, ys, _depth(xs, ys) + 4.0)
        dense = canvas.catmull_rom(centre, closed=False, per_segment=3)
        t = np.linspace(0, 1, len(dense))
        # A rounded inner end: the width swells over the first few percent instead of starting blunt.
        hw = (
            np.interp(t, np.linspace(0, 1, len(half)), half)
            * np.sqrt(np.clip(t / 0.07, 0.3, 1.0))
            * pose.unit
        )
        return canvas.stroke(dense, hw), centre

    def _mouth(self, pose: _Pose, m: F32) -> _Mouth:
        jaw, wide, rnd = float(m[_F["jaw_open"]]), float(m[_F["mouth_wide"]]), float(m[_F["mouth_round"]])
        pressed, lip_up, lip_down = (
            float(m[_F["lips_pressed"]]),
            float(m[_F["upper_lip_up"]]),
            float(m[_F["lower_lip_down"]]),
        )
        smile_l, smile_r = float(m[_F["smile_l"]]), float(m[_F["smile_r"]])
        tuck, drop = max(-lip_down, 0.0), max(lip_down, 0.0)
        open_ = 1.0 - pressed
        u = MOUTH_U
        # Half widths per side: smile_l pulls the image-right corner (u > 0), smile_r the image-left one.
        base = MOUTH_HW * (1.0 + 0.28 * wide - 0.4 * rnd - 0.06 * jaw)
        x = np.where(u >= 0, u * (base + 4.0 * smile_l), u * (base + 4.0 * smile_r))
        lift = np.where(u >= 0, -7.5 * smile_l, -7.5 * smile_r) + 1.2 * jaw - 2.4
        corner = lift * u * u
        # Upper lip rises, lower lip drops with the jaw (and further: the lips part too, a little faster
        # at first, so half-open vowels read); lips_pressed pulls both onto the seam, exactly.
        jo = jaw**0.8
        up_jaw = JAW_LIP_UP * jo
        up = (6.0 * lip_up + up_jaw + 4.5 * tuck + 1.5 * rnd) * open_
        jaw_drop = JAW_LIP_DOWN * jo + 3.0 * rnd
        down = (jaw_drop + 5.5 * drop - 0.5 * tuck) * open_  # tucked: the lower lip rises under the teeth
        gap = up + down
        # A wide-open mouth is fuller at the sides (a rounded box rather than a lens).
        opening = _bump(u, max(0.75 - 0.35 * rnd + 0.1 * wide - 0.3 * jo, 0.3), 0.0)
        y_ui = corner - up * opening
        y_li = corner + down * opening
        # The lips stretch thinner as the mouth opens.
        t_up = 5.3 * (1.0 + 0.35 * rnd - 0.25 * wide - 0.45 * pressed) * (1.0 - 0.15 * jo * open_)
        t_low = 8.0 * (1.0 + 0.3 * rnd - 0.2 * wide - 0.4 * pressed - 0.35 * tuck) * (1.0 - 0.2 * jo * open_)
        au = np.abs(u)
        bow = 1.0 + 0.14 * np.exp(-(((au - 0.34) / 0.17) ** 2)) - 0.22 * np.exp(-((u / 0.12) ** 2))
        y_uo = y_ui - t_up * np.maximum(1.0 - u * u, 0.0) ** (0.55 - 0.2 * rnd) * bow
        y_lo = y_li + t_low * np.maximum(1.0 - u * u, 0.0) ** (0.6 - 0.2 * rnd)
        # Cavity: a little larger than the inner lips so the lips' anti-aliased edges land on it.
        grow = 0.9 * min(1.0, gap / 2.0)
        teeth_x = np.linspace(-1.0, 1.0, 9)
        tw = TEETH_HW * (1.0 + 0.1 * wide)
        # Teeth: thin bands under the upper lip and over the lower one, the dark cavity between them.
        t_edge = 2.6 - 1.6 * teeth_x**2 - 0.75 * up_jaw * open_
        low_top = (jaw_drop - 0.5 * tuck) * open_ - 2.4 + 1.3 * teeth_x**2
        t_top = -(up + 8.0)  # the teeth's hidden edges, safely under the lips
        low_bottom = float(low_top[4]) + 16.0
        # The tongue lies low, behind the lower teeth.
        tongue = canvas.ellipse(0.0, down + 2.0, 0.72 * min(float(x[-1]), float(-x[0])), 0.22 * gap + 3.0, 20)
        ux, uy, lx, ly = teeth_x * tw, t_edge, teeth_x * tw, low_top
        hl_u = np.linspace(-0.38, 0.38, 7)
        lens = np.sin(np.linspace(0, np.pi, 7)) * 0.22
        hl_mid = np.interp(hl_u, u, y_li) + 0.42 * np.interp(hl_u, u, y_lo - y_li)
        hl_top = hl_mid - lens * np.interp(hl_u, u, y_lo - y_li)
        hl_bot = hl_mid + lens * np.interp(hl_u, u, y_lo - y_li)
        sh_u = np.linspace(-0.5, 0.5, 7)
        sh_y = np.interp(sh_u, u, y_lo) + 2.8
        corner_x = np.array([float(x[0]), float(x[-1])])
        corner_y = np.array([float(corner[0]), float(corner[-1])])
        # One projection for every mouth point keeps the hot path to a handful of numpy calls.
        parts: list[tuple[F64, F64]] = [
            (x, y_uo),
            (x, y_ui),
            (x, y_li),
            (x, y_lo),
            (
                np.concatenate([x, x[::-1]]),
                np.concatenate([y_ui - grow * opening, (y_li + grow * opening)[::-1]]),
            ),
            (np.concatenate([ux * 1.2, ux[::-1] * 1.2]), np.concatenate([uy + 0.4, np.full(9, t_top)])),
            (np.concatenate([ux * 0.8, ux[::-1] * 0.8]), np.concatenate([uy, np.full(9, t_top)])),
            (
                np.concatenate([lx * 1.15, lx[::-1] * 1.15]),
                np.concatenate([ly + 0.4, np.full(9, low_bottom)]),
            ),
            (np.concatenate([lx * 0.8, lx[::-1] * 0.8]), np.concatenate([ly, np.full(9, low_bottom)])),
            (tongue[:, 0], tongue[:, 1]),
            (np.concatenate([hl_u * base, hl_u[::-1] * base]), np.concatenate([hl_top, hl_bot[::-1]])),
            (sh_u * base, sh_y),
            (corner_x, corner_y),
        ]
        xs = np.concatenate([p[0] for p in parts])
        ys = np.concatenate([p[1] for p in parts]) + MOUTH_Y
        zs = _depth(xs, ys) + 6.0 + 9.0 * rnd
        pts = self._project(pose, xs, ys, zs)
        out: list[F64] = []
        i = 0
        for px, _ in parts:
            out.append(pts[i : i + len(px)])
            i += len(px)
        unit = pose.unit
        corners = []
        for k, s in ((0, -1.0), (1, 1.0)):
            c = out[12][k]
            smile = smile_r if s < 0 else smile_l
            d = np.array([s * (1.5 + 1.5 * smile), -0.6 - 2.0 * smile]) * unit
            curve = np.stack([c - d * 0.2, c + d * 0.5, c + d])
            corners.append(canvas.stroke(curve, np.array([0.5, 0.55, 0.2]) * unit))
        return _Mouth(
            upper_outer=out[0],
            upper_inner=out[1],
            lower_inner=out[2],
            lower_outer=out[3],
            cavity=out[4] if gap > 0.05 else None,
            teeth_upper=(out[5], out[6]),
            teeth_lower=(out[7], out[8]),
            tongue=out[9],
            gap=gap,
            highlight=out[10],
            under_shadow=canvas.stroke(out[11], np.array([0.3, 1.0, 1.5, 1.6, 1.5, 1.0, 0.3]) * unit),
            corners=(corners[0], corners[1]),
        )

    def _rig(self, motion: npt.NDArray[np.float32]) -> _Rig:
        m = np.asarray(motion, np.float32).reshape(-1)
        if m.shape[0] != MOTION_DIM:
            raise ValueError(f"a motion frame has {MOTION_DIM} fields, got {m.shape[0]}")
        m = clip(np.where(np.isfinite(m), m, NEUTRAL).astype(np.float32))
        pose = self._pose(m)
        eyes = (self._eye(pose, m, -1), self._eye(pose, m, 1))
        brow_l, centre_l = self._brow(pose, m, -1)
        brow_r, centre_r = self._brow(pose, m, 1)
        mouth = self._mouth(pose, m)
        nose_local = np.array(
            [
                [0, 0, 4],
                [0, 14, 9],
                [0, 28, 15],
                [0, NOSE_TIP_Y, 22],
                [-11, 49, 10],
                [-5.5, 51, 14],
                [0, 52, 17],
                [5.5, 51, 14],
                [11, 49, 10],
            ],
            np.float64,
        )
        nose = self._project(
            pose,
            nose_local[:, 0],
            nose_local[:, 1],
            _depth(nose_local[:, 0], nose_local[:, 1]) + nose_local[:, 2],
        )
        # The nose sprite rides on the projected tip; it turns with roll and narrows with yaw.
        tip_rest = self._to_px @ np.array([HEAD_C[0], HEAD_C[1] + NOSE_TIP_Y, 1.0])
        lin = pose.head_px[:2, :2] / self.view.scale
        squash = np.diag([1.0 - SQUASH * (1.0 - pose.cos_yaw), 1.0 - 0.5 * (1.0 - pose.cos_pitch)])
        nose_m = np.eye(3)
        nose_m[:2, :2] = lin @ squash
        nose_px = (
            canvas.translate(nose[3, 0], nose[3, 1]) @ nose_m @ canvas.translate(-tip_rest[0], -tip_rest[1])
        )
        jaw_open = float(m[_F["jaw_open"]])
        drop = CHIN_DROP * jaw_open
        k = min(int(jaw_open * (JAW_TABLE - 1)), JAW_TABLE - 2)
        f = jaw_open * (JAW_TABLE - 1) - k
        jaw_ref = self._jaw_table[k] * (1.0 - f) + self._jaw_table[k + 1] * f  # (17, 2)
        jaw = (pose.face_px @ self._to_px @ np.vstack([jaw_ref.T, np.ones(17)]))[:2].T  # (17, 2)
        lm = np.empty((68, 2), np.float64)
        lm[0:17] = jaw
        lm[17:22] = centre_l[::-2]  # outer -> inner on the image-left brow
        lm[22:27] = centre_r[::2]  # inner -> outer on the image-right brow
        lm[27:36] = nose
        el, er = eyes
        lm[36:42] = [el.upper[12], el.upper[8], el.upper[4], el.upper[0], el.lower[4], el.lower[8]]
        lm[42:48] = [er.upper[0], er.upper[4], er.upper[8], er.upper[12], er.lower[8], er.lower[4]]
        mo = mouth
        lm[48:55] = mo.upper_outer[[0, 4, 8, 12, 16, 20, 24]]
        lm[55:60] = mo.lower_outer[[20, 16, 12, 8, 4]]
        lm[60:65] = mo.upper_inner[[0, 6, 12, 18, 24]]
        lm[65:68] = mo.lower_inner[[18, 12, 6]]
        return _Rig(pose, eyes, (brow_l, brow_r), nose_px, mouth, drop, lm.astype(np.float32))

    # -- drawing ---------------------------------------------------------------------------------

    def _jaw_warp(self, pose: _Pose, drop: float) -> canvas.Warp | None:
        """The jaw's drop as a frame-space warp: its box and each box pixel's source position.

        The field lives in the face layer's rest frame (so it turns and scales with the head); every
        layer the jaw overlaps (hair behind, neck with the chin's shadow, face) is resampled through it.
        """
        if drop * pose.unit < 0.02:
            return None
        a = self._jaw_a
        rect = np.array(
            [
                [CX - JAW_X * a, JAW_RAMP[0], 1.0],
                [CX + JAW_X * a, JAW_RAMP[0], 1.0],
                [CX - JAW_X * a, JAW_FADE[1], 1.0],
                [CX + JAW_X * a, JAW_FADE[1], 1.0],
            ]
        )  # (4, 3) rest ref
        face = pose.face_px
        corners = rect @ (face @ self._to_px)[:2].T  # (4, 2) frame pixels
        box = canvas.bounding_box(corners, self._background, 1.0)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        to_ref = (self._to_ref @ np.linalg.inv(face))[:2]  # frame pixels -> rest ref
        # The field is smooth (it ramps over 30+ ref units), so it is evaluated on a grid JAW_STEP ref
        # units apart and upsampled; the coarse samples sit where cv2.resize puts its source pixels.
        w, h = x1 - x0, y1 - y0
        step = max(1, min(round(JAW_STEP * self.view.scale), 3))  # bilinear error < 0.2 px
        nx, ny = -(-w // step), -(-h // step)
        cx = (x0 + (np.arange(nx) + 0.5) * step - 0.5)[None, :]  # (1, nx)
        cy = (y0 + (np.arange(ny) + 0.5) * step - 0.5)[:, None]  # (ny, 1)
        qx = cx * to_ref[0, 0] + (cy * to_ref[0, 1] + to_ref[0, 2])  # (ny, nx)
        qy = cx * to_ref[1, 0] + (cy * to_ref[1, 1] + to_ref[1, 2])
        d: F32 = (_jaw_columns(qx, a) * _jaw_rows(qy) * (drop * self.view.scale)).astype(np.float32)
        if step > 1:  # (ny, nx) rest px -> (h, w)
            d = np.asarray(cv2.resize(d, (nx * step, ny * step), interpolation=cv2.INTER_LINEAR), np.float32)
        d = d[:h, :w]
        src = np.empty((h, w, 2), np.float32)
        src[..., 0] = np.arange(x0, x1, dtype=np.float32)[None, :] - d * np.float32(face[0, 1])
        src[..., 1] = np.arange(y0, y1, dtype=np.float32)[:, None] - d * np.float32(face[1, 1])
        return canvas.Warp(
            box, src
        )  # each pixel samples from up the rest frame's "down", carried to the frame

    def _draw_eye(self, img: U8, eye: _Eye, unit: float) -> None:
        c = self._c
        opening = np.concatenate([eye.upper, eye.lower[::-1]])
        if eye.opening > 0.25:
            box = canvas.bounding_box(opening, img, 2.0)
            if box is not None:
                x0, y0, x1, y1 = box
                off = np.array([x0, y0], np.float64)
                content = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
                content[...] = c["sclera"]
                canvas.fill(content, canvas.stroke(eye.upper - off, 2.6 * unit), c["sclera_shadow"])
                colors = ("iris_dark", "iris", "iris_light", "pupil", "sclera", "sclera")
                for circle, name in zip(eye.circles, colors, strict=True):
                    canvas.fill(content, circle - off, c[name])
                canvas.fill(
                    content, canvas.stroke(eye.upper - off + (0, 0.9 * unit), 1.1 * unit), c["sclera_shadow"]
                )
                mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
                canvas.fill(mask, opening - off, (255.0, 0.0, 0.0))
                canvas.blend_masked(img, box, content, mask)
        # Lash line along the upper lid, thickening to a small flick past the outer corner.
        up = eye.upper
        outward = up[-1] - up[-2]
        outward /= max(float(np.hypot(*outward)), 1e-6)
        normal = np.array([outward[1], -outward[0]])
        if normal[1] > 0:
            normal = -normal
        wing = np.stack(
            [up[-1] + (outward * 2.6 + normal * 1.2) * unit, up[-1] + (outward * 4.6 + normal * 2.6) * unit]
        )
        lash = np.concatenate([up, wing])
        hw = np.concatenate([np.linspace(0.35, 1.35, len(up)), [0.8, 0.15]]) * unit
        canvas.fill(img, canvas.stroke(lash + normal * (0.45 * hw[:, None]), hw), c["lash"])
        open_ = 1.0 - eye.closure
        if open_ > 0.05:
            canvas.fill_alpha(
                img,
                canvas.stroke(eye.lower[2:], np.full(len(eye.lower) - 2, 0.45 * unit)),
                c["skin_shadow"],
                0.55 * open_,
            )
        canvas.fill_alpha(
            img,
            canvas.stroke(eye.crease, np.linspace(0.3, 0.65, len(eye.crease)) * unit),
            c["skin_shadow"],
            0.5 - 0.2 * eye.closure,
        )

    def _draw_mouth(self, img: U8, mo: _Mouth, unit: float) -> None:
        c = self._c
        if mo.cavity is not None:
            box = canvas.bounding_box(mo.cavity, img, 2.0)
            if box is not None:
                x0, y0, x1, y1 = box
                off = np.array([x0, y0], np.float64)
                content = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
                content[...] = c["cavity"]
                canvas.fill(content, mo.tongue - off, c["tongue"])
                for band, name in zip(
                    mo.teeth_lower + mo.teeth_upper, ("teeth_shade", "teeth") * 2, strict=True
                ):
                    canvas.fill(content, band - off, c[name])
                mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
                canvas.fill(mask, mo.cavity - off, (255.0, 0.0, 0.0))
                canvas.blend_masked(img, box, content, mask)
        canvas.fill(img, np.concatenate([mo.upper_outer, mo.upper_inner[::-1]]), c["lips_upper"])
        canvas.fill(img, np.concatenate([mo.lower_inner, mo.lower_outer[::-1]]), c["lips"])
        canvas.fill_alpha(img, mo.highlight, c["lips_light"], 0.4)
        canvas.fill_alpha(img, mo.under_shadow, c["skin_shadow"], 0.3)
        seam = 0.5 * (mo.upper_inner[2:-2] + mo.lower_inner[2:-2])
        canvas.fill_alpha(
            img, canvas.stroke(seam, 0.55 * unit), c["lips_dark"], 0.9 * max(0.0, 1.0 - mo.gap / 2.5)
        )
        for corner in mo.corners:
            canvas.fill_alpha(img, corner, c["skin_shadow"], 0.55)

    def render(self, motion: npt.NDArray[np.float32]) -> Image:
        """Motion frame (D,) -> RGB image (H, W, 3) uint8; deterministic."""
        rig = self._rig(motion)
        pose = rig.pose
        img = self._background.copy()
        warp = self._jaw_warp(pose, rig.chin_drop)
        canvas.composite(img, self._back, pose.back_px, warp if self._back_in_jaw else None)
        canvas.composite(img, self._neck, pose.neck_px, warp)
        canvas.composite_shift(img, self._torso, *pose.torso)
        canvas.composite(img, self._face, pose.face_px, warp)
        canvas.composite(img, self._nose, rig.nose_px)
        unit = pose.unit
        for eye in rig.eyes:
            self._draw_eye(img, eye, unit)
        for brow in rig.brows:
            canvas.fill(img, brow, self._c["brow"])
        self._draw_mouth(img, rig.mouth, unit)
        return img

    def landmarks(self, motion: npt.NDArray[np.float32]) -> Points:
        """The 68 iBUG landmarks (68, 2) in output pixels, as ``render`` draws them."""
        return self._rig(motion).landmarks
