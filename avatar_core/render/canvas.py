"""2D drawing on numpy images for the stylized renderer: colours, curves, affine matrices,
anti-aliased fills, and premultiplied sprites that are painted once and composited per frame.

Points are (N, 2) float arrays of x right, y down; matrices are 3x3 affines on homogeneous points; images
are (H, W, 3) uint8 RGB. A :class:`View` maps the renderer's reference canvas to output pixels.

Letters in shape comments: N points, H/W image rows/columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from avatar_core.render.base import hex_to_rgb

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
FArr = npt.NDArray[np.floating[Any]]  # shading maps: float32 or float64
U8 = npt.NDArray[np.uint8]
Rgb = tuple[float, float, float]  # a colour as cv2 drawing calls take it
ControlPoints = Sequence[tuple[float, float]]

SUPERSAMPLE = 2  # static layers are painted at twice the output size, then area-downsampled...
SUPERSAMPLE_MAX_SCALE = 1.25  # ...up to 640 px; larger frames have enough pixels for LINE_AA alone


# ---------------------------------------------------------------------------------------------------
# Small helpers: colours, curves, matrices
# ---------------------------------------------------------------------------------------------------


def color(hex_color: str) -> F64:
    return np.array(hex_to_rgb(hex_color), np.float64)


def mix(a: F64, b: F64 | Sequence[float], t: float) -> F64:
    return np.asarray(a, np.float64) * (1.0 - t) + np.asarray(b, np.float64) * t


def tup(c: F64) -> Rgb:
    v = np.clip(c, 0, 255)
    return float(v[0]), float(v[1]), float(v[2])


def catmull_rom(points: ControlPoints | F64, closed: bool, per_segment: int = 10) -> F64:
    """A Catmull-Rom spline through control points (N, 2) -> (M, 2); open curves keep their ends."""
    p = np.asarray(points, np.float64)
    if closed:
        p0, p1, p2, p3 = np.roll(p, 1, 0), p, np.roll(p, -1, 0), np.roll(p, -2, 0)
    else:
        ext = np.concatenate([p[:1] * 2 - p[1:2], p, p[-1:] * 2 - p[-2:-1]])  # (N+2, 2) mirrored ends
        p0, p1, p2, p3 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None, None]  # (S, 1, 1)
    out = 0.5 * (
        2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3
    )  # (S, N', 2)
    curve = out.transpose(1, 0, 2).reshape(-1, 2)
    return curve if closed else np.concatenate([curve, p[-1:]])


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 48) -> F64:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)  # (n, 2)


def stroke(points: F64, half_width: F64 | float) -> F64:
    """The outline (2N, 2) of a polyline (N, 2) drawn with a (per-point) half width."""
    d = np.gradient(points, axis=0)  # (N, 2)
    n = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    off = n * np.reshape(half_width, (-1, 1))
    return np.concatenate([points + off, (points - off)[::-1]])


def translate(tx: float, ty: float) -> F64:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def linear(a: float, b: float, c: float, d: float) -> F64:
    return np.array([[a, b, 0.0], [c, d, 0.0], [0.0, 0.0, 1.0]])


def about(m: F64, centre: F64) -> F64:
    """Matrix ``m`` applied about a centre point instead of the origin."""
    return translate(centre[0], centre[1]) @ m @ translate(-centre[0], -centre[1])


def rotation(angle: float, scale: float = 1.0) -> F64:
    # In y-down image coordinates a positive angle turns clockwise on screen, as head_roll wants.
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return linear(c, -s, s, c)


def ipoly(points: F64) -> npt.NDArray[np.int32]:
    """Pixel coordinates -> the fixed-point int32 polygon cv2 draws with shift=4 (1/16 pixel)."""
    return np.round(points * 16.0).astype(np.int32)


def fill(img: U8, points: F64, color: Rgb) -> None:
    cv2.fillPoly(img, [ipoly(points)], color, cv2.LINE_AA, 4)


def bounding_box(points: F64, img: U8, pad: float) -> tuple[int, int, int, int] | None:
    """Integer bounding box (x0, y0, x1, y1) of points, padded and clipped to the image."""
    h, w = img.shape[:2]
    x0 = max(math.floor(float(points[:, 0].min()) - pad), 0)
    y0 = max(math.floor(float(points[:, 1].min()) - pad), 0)
    x1 = min(math.ceil(float(points[:, 0].max()) + pad), w)
    y1 = min(math.ceil(float(points[:, 1].max()) + pad), h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def fill_alpha(img: U8, points: F64, color: Rgb, alpha: float) -> None:
    """A translucent anti-aliased polygon, blended on its bounding box only."""
    box = bounding_box(points, img, 2.0) if alpha > 0.01 else None
    if box is None:
        return
    x0, y0, x1, y1 = box
    roi = img[y0:y1, x0:x1]
    layer = roi.copy()
    fill(layer, points - (x0, y0), color)
    roi[...] = cv2.addWeighted(layer, alpha, roi, 1.0 - alpha, 0.0)


def blend_masked(img: U8, box: tuple[int, int, int, int], content: U8, mask: U8) -> None:
    """img[box] = content over img[box] through an 8-bit coverage mask (small regions only)."""
    x0, y0, x1, y1 = box
    roi = img[y0:y1, x0:x1]
    m = mask.astype(np.uint16)[..., None]  # (h, w, 1)
    roi[...] = ((content * m + roi * (255 - m) + 127) // 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Sprites: painted once, composited per frame
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """Reference canvas -> output pixels: p_px = offset + scale * p_ref."""

    scale: float
    ox: float
    oy: float

    @property
    def supersample(self) -> int:
        return SUPERSAMPLE if self.scale <= SUPERSAMPLE_MAX_SCALE else 1

    @property
    def to_px(self) -> F64:
        return np.array([[self.scale, 0.0, self.ox], [0.0, self.scale, self.oy], [0.0, 0.0, 1.0]])

    @property
    def to_ref(self) -> F64:
        return np.asarray(np.linalg.inv(self.to_px), np.float64)


@dataclass(frozen=True)
class Sprite:
    """A premultiplied RGB layer with its inverse alpha, resting at integer pixel (x0, y0)."""

    rgb: U8  # (h, w, 3) premultiplied colour
    inv_alpha: U8  # (h, w) 255 - alpha
    rgba: U8  # (h, w, 4) both in one array: one 4-channel warp is ~2.5x faster than a 3- and a 1-channel
    x0: int
    y0: int


class Painter:
    """A float premultiplied RGBA canvas over one rectangle of the output, supersampled.

    Shapes are given in ref units; coverages are float (h, w) maps in [0, 1] at the supersampled size.
    """

    def __init__(self, view: View, box: tuple[float, float, float, float]) -> None:
        self.view = view
        self.x0 = math.floor(view.ox + view.scale * box[0])
        self.y0 = math.floor(view.oy + view.scale * box[1])
        self.w = max(1, math.ceil(view.ox + view.scale * box[2]) - self.x0)
        self.h = max(1, math.ceil(view.oy + view.scale * box[3]) - self.y0)
        self.ss = view.supersample
        self.k = view.scale * self.ss  # canvas pixels per ref unit
        shape = (self.h * self.ss, self.w * self.ss)
        self.rgb = np.zeros((*shape, 3), np.float32)  # (h', w', 3) premultiplied, 0..255
        self.alpha = np.zeros(shape, np.float32)  # (h', w')

    def _px(self, points: F64) -> F64:
        p = np.asarray(points, np.float64)
        x = (self.view.ox + self.view.scale * p[:, 0] - self.x0) * self.ss
        y = (self.view.oy + self.view.scale * p[:, 1] - self.y0) * self.ss
        return np.stack([x, y], 1)

    def cover(self, *polygons: F64) -> F32:
        """Anti-aliased coverage of the union of closed polygons (ref units)."""
        mask = np.zeros(self.alpha.shape, np.uint8)
        for p in polygons:  # one call per polygon: a single fillPoly would XOR the overlaps
            cv2.fillPoly(mask, [ipoly(self._px(p))], 255, cv2.LINE_AA, 4)
        return mask.astype(np.float32) / 255.0

    def line(self, points: F64, half_width: float | F64) -> F32:
        return self.cover(stroke(np.asarray(points, np.float64), half_width))

    def blur(self, cov: F32, sigma_ref: float) -> F32:
        """Gaussian blur with sigma in ref units; wide blurs run on a downsampled copy (init speed)."""
        sigma = sigma_ref * self.k
        factor = max(1, int(sigma / 3.0))
        if factor == 1:
            return np.asarray(cv2.GaussianBlur(cov, (0, 0), sigma), np.float32)
        h, w = cov.shape
        small = cv2.resize(cov, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
        return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)

    def shift(self, cov: F32, dx_ref: float, dy_ref: float) -> F32:
        m = np.array([[1.0, 0.0, dx_ref * self.k], [0.0, 1.0, dy_ref * self.k]])
        return np.asarray(cv2.warpAffine(cov, m, (cov.shape[1], cov.shape[0])), np.float32)

    def grid(self) -> tuple[F32, F32]:
        """Ref coordinates of every canvas pixel centre: x (1, w'), y (h', 1)."""
        xs = ((np.arange(self.alpha.shape[1]) + 0.5) / self.ss + self.x0 - self.view.ox) / self.view.scale
        ys = ((np.arange(self.alpha.shape[0]) + 0.5) / self.ss + self.y0 - self.view.oy) / self.view.scale
        return xs.astype(np.float32)[None, :], ys.astype(np.float32)[:, None]

    def paint(self, cov: FArr, color: F64, opacity: float = 1.0) -> None:
        """Paint a solid colour over everything through a coverage map."""
        a = cov * np.float32(opacity)
        self.rgb += a[..., None] * (color.astype(np.float32) - self.rgb)
        self.alpha += a * (1.0 - self.alpha)

    def tint(self, amount: FArr, color: F64) -> None:
        """Move what is already painted toward a colour (shading); leaves alpha alone."""
        target = self.alpha[..., None] * color.astype(np.float32)  # premultiplied target
        self.rgb += amount[..., None] * (target - self.rgb)

    def sprite(self) -> Sprite:
        """Downsample to output pixels and quantise."""
        size = (self.w, self.h)
        rgb: FArr = self.rgb
        alpha: FArr = self.alpha
        if self.ss > 1:
            rgb = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.float32)
            alpha = np.asarray(cv2.resize(alpha, size, interpolation=cv2.INTER_AREA), np.float32)
        rgb8 = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
        inv8 = np.clip(255.0 - alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Sprite(rgb8, inv8, np.dstack([rgb8, inv8]), self.x0, self.y0)


@dataclass(frozen=True)
class Warp:
    """A smooth displacement of one frame rectangle: each pixel there shows what rests at ``src``."""

    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) frame pixels
    src: F32  # (h, w, 2) frame pixel (x, y) each box pixel samples; equal to its own position at the edges


def composite(frame: U8, sprite: Sprite, motion_px: F64, warp: Warp | None = None) -> None:
    """Warp a sprite by a pixel-space affine (rest frame -> now) and blend it over the frame.

    With a ``warp``, the part of the sprite inside its box is resampled through it instead (cv2.remap);
    the box may reach past the sprite's own footprint, since the warp can pull content out of it.
    """
    m = motion_px @ translate(sprite.x0, sprite.y0)  # sprite pixels -> frame pixels
    h, w = sprite.inv_alpha.shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m[:2].T  # (4, 2)
    box = bounding_box(corners, frame, 1.0)
    if box is not None and warp is not None:  # the union of both boxes
        box = (
            min(box[0], warp.box[0]),
            min(box[1], warp.box[1]),
            max(box[2], warp.box[2]),
            max(box[3], warp.box[3]),
        )
    if box is None:
        return
    x0, y0, x1, y1 = box
    m_roi = (translate(-x0, -y0) @ m)[:2]
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(
        sprite.rgba,
        m_roi,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 255),
    )
    if warp is not None:
        wx0, wy0, wx1, wy1 = warp.box
        to_sprite = np.linalg.inv(m)[:2]  # frame pixels -> sprite pixels
        src = cv2.transform(warp.src, to_sprite)  # (h, w, 2) float32
        warped[wy0 - y0 : wy1 - y0, wx0 - x0 : wx1 - x0] = cv2.remap(
            sprite.rgba,
            src,
            cast(Any, None),  # map1 holds (x, y) pairs; the stubs do not know map2 may be left out
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0, 255),
        )
    over(frame, (x0, y0, x1, y1), cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB), cv2.extractChannel(warped, 3))


def composite_shift(frame: U8, sprite: Sprite, dx: int, dy: int) -> None:
    """Blend a sprite moved by whole pixels (no resampling)."""
    h, w = sprite.inv_alpha.shape
    fx0, fy0 = sprite.x0 + dx, sprite.y0 + dy
    x0, y0 = max(fx0, 0), max(fy0, 0)
    x1, y1 = min(fx0 + w, frame.shape[1]), min(fy0 + h, frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    sx, sy = x0 - fx0, y0 - fy0
    rgb = sprite.rgb[sy : sy + y1 - y0, sx : sx + x1 - x0]
    inv = sprite.inv_alpha[sy : sy + y1 - y0, sx : sx + x1 - x0]
    over(frame, (x0, y0, x1, y1), rgb, inv)


def over(frame: U8, box: tuple[int, int, int, int], rgb: npt.NDArray[Any], inv: npt.NDArray[Any]) -> None:
    # Premultiplied "over" in uint8 with cv2's saturating SIMD ops; numpy float blending is ~10x slower.
    x0, y0, x1, y1 = box
    roi = frame[y0:y1, x0:x1]
    out = cv2.multiply(roi, cv2.cvtColor(inv, cv2.COLOR_GRAY2RGB), scale=1.0 / 255.0)
    roi[...] = cv2.add(out, rgb)
