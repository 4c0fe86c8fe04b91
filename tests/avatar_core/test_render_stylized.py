"""The stylized renderer, drawn for real: shapes, determinism, every motion channel, landmarks, parallax."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from avatar_core.config import AppearanceConfig, StylizedFace
from avatar_core.motion import HIGH, LOW, MOTION_DIM, NEUTRAL, frame
from avatar_core.render import make_renderer
from avatar_core.render.base import Renderer, inner_lip_gap
from avatar_core.render.stylized import FACE_H, StylizedRenderer

Image = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]


@pytest.fixture(scope="module")
def r512() -> StylizedRenderer:
    return StylizedRenderer(StylizedFace(), 512, 512)


@pytest.fixture(scope="module")
def r256() -> StylizedRenderer:
    return StylizedRenderer(StylizedFace(), 256, 256)


def box_of(points: npt.NDArray[np.float32], pad: float, size: int = 512) -> Box:
    """Integer (x0, y0, x1, y1) around landmark points, padded, inside the image."""
    x0, y0 = np.floor(points.min(0) - pad).astype(int)
    x1, y1 = np.ceil(points.max(0) + pad).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)


def crop(img: Image, box: Box) -> npt.NDArray[np.float64]:
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1].astype(np.float64)


def region_change(a: Image, b: Image, box: Box) -> float:
    """Mean absolute difference of two renders inside a box (0..255)."""
    return float(np.abs(crop(a, box) - crop(b, box)).mean())


def cavity_pixels(img: Image, box: Box) -> int:
    """Very dark pixels: the open mouth's cavity (the lips' own darkest seam stays lighter)."""
    return int((crop(img, box).max(axis=2) < 80).sum())


def inside(points: npt.NDArray[np.float32], size: int) -> npt.NDArray[np.bool_]:
    """Mask (size, size) of the polygon through the points."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


# ---------------------------------------------------------------------------------------------------
# Output, determinism, robustness
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [256, 512])
def test_output_shape_and_dtype(size: int) -> None:
    r = StylizedRenderer(StylizedFace(), size, size)
    img = r.render(NEUTRAL)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    lm = r.landmarks(NEUTRAL)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert np.all((lm > 0) & (lm < size))


def test_non_square_frames_and_the_factory() -> None:
    r = make_renderer(AppearanceConfig(), 320, 240)
    assert isinstance(r, StylizedRenderer) and isinstance(r, Renderer)
    img = r.render(frame(jaw_open=0.5, head_yaw=0.3))
    assert img.shape == (240, 320, 3)
    lm = r.landmarks(NEUTRAL)
    assert abs(float(lm[:, 0].mean()) - 160) < 10  # the avatar is centred


def test_deterministic(r256: StylizedRenderer) -> None:
    m = frame(jaw_open=0.4, smile_l=0.3, gaze_x=0.2, head_yaw=0.17, head_roll=-0.05, head_z=0.03)
    first = r256.render(m)
    assert first.tobytes() == r256.render(m).tobytes()
    assert first.tobytes() == StylizedRenderer(StylizedFace(), 256, 256).render(m).tobytes()
    np.testing.assert_array_equal(r256.landmarks(m), r256.landmarks(m))


def test_extremes_and_random_motions_render(r256: StylizedRenderer) -> None:
    rng = np.random.default_rng(7)
    motions = [
        LOW,
        HIGH,
        np.where(np.arange(MOTION_DIM) % 2 == 0, LOW, HIGH),
        np.where(np.arange(MOTION_DIM) % 2 == 1, LOW, HIGH),
    ]
    motions += list((LOW + (HIGH - LOW) * rng.random((50, MOTION_DIM))).astype(np.float32))
    for m in motions:
        img = r256.render(m.astype(np.float32))
        lm = r256.landmarks(m.astype(np.float32))
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        assert np.isfinite(lm).all()
    # All styles and shapes survive the extremes too.
    for style in ("short", "bob", "long", "bun", "bald"):
        r = StylizedRenderer(StylizedFace(hair_style=style, face_shape="heart", face_width=1.2), 128, 128)
        for m in (LOW, HIGH):
            assert r.render(m).shape == (128, 128, 3)


def test_out_of_range_and_nan_input_is_clipped(r256: StylizedRenderer) -> None:
    wild = (NEUTRAL + 50.0).astype(np.float32)
    assert r256.render(wild).tobytes() == r256.render(HIGH).tobytes()
    broken = NEUTRAL.copy()
    broken[0] = np.nan
    assert r256.render(broken).tobytes() == r256.render(NEUTRAL).tobytes()
    with pytest.raises(ValueError, match="fields"):
        r256.render(np.zeros(3, np.float32))


# ---------------------------------------------------------------------------------------------------
# The mouth
# ---------------------------------------------------------------------------------------------------


MOUTH_CASES = [
    ("jaw_open", frame(jaw_open=0.6), NEUTRAL),
    ("mouth_wide", frame(mouth_wide=1.0), NEUTRAL),
    ("mouth_round", frame(mouth_round=1.0), NEUTRAL),
    ("lips_pressed", frame(jaw_open=0.6, lips_pressed=1.0), frame(jaw_open=0.6)),
    ("upper_lip_up", frame(upper_lip_up=1.0), NEUTRAL),
    ("lower_lip_down+", frame(lower_lip_down=1.0), NEUTRAL),
    ("lower_lip_down-", frame(lower_lip_down=-1.0), NEUTRAL),
    ("smile_l", frame(smile_l=1.0), NEUTRAL),
    ("smile_r", frame(smile_r=1.0), NEUTRAL),
]


@pytest.mark.parametrize(("name", "motion", "reference"), MOUTH_CASES, ids=[c[0] for c in MOUTH_CASES])
def test_mouth_channels_change_the_mouth_only(
    r512: StylizedRenderer, name: str, motion: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]
) -> None:
    mouth = box_of(r512.landmarks(NEUTRAL)[48:68], pad=12)
    a, b = r512.render(motion), r512.render(reference)
    assert region_change(a, b, mouth) > 1.5, name
    # Nothing above the nose moves: the mouth channels are local.
    top = int(r512.landmarks(NEUTRAL)[30, 1]) - 12
    np.testing.assert_array_equal(a[:top], b[:top])


def test_lips_pressed_seals_the_mouth_even_with_the_jaw_open(r512: StylizedRenderer) -> None:
    mouth = box_of(r512.landmarks(NEUTRAL)[48:68], pad=16)
    open_ = frame(jaw_open=0.8)
    sealed = frame(jaw_open=0.8, lips_pressed=1.0)
    assert inner_lip_gap(r512.landmarks(sealed)) == 0.0
    assert inner_lip_gap(r512.landmarks(open_)) > 10.0
    assert cavity_pixels(r512.render(open_), mouth) > 60
    assert cavity_pixels(r512.render(sealed), mouth) == 0
    assert cavity_pixels(r512.render(NEUTRAL), mouth) == 0


def test_open_mouth_is_drawn_inside_the_inner_lip_landmarks(r512: StylizedRenderer) -> None:
    m = frame(jaw_open=0.8)
    lm = r512.landmarks(m)
    img = r512.render(m)
    hole = inside(lm[60:68], 512)
    skin = np.array([232, 185, 150], np.float64)  # StylizedFace().skin
    not_skin = np.abs(img[hole].astype(np.float64) - skin).sum(1) > 60
    assert hole.sum() > 200 and not_skin.mean() > 0.95


def test_open_mouth_reads_large_with_a_dark_cavity(r512: StylizedRenderer) -> None:
    m = frame(jaw_open=0.75)
    lm = r512.landmarks(m)
    assert 0.06 * 512 <= inner_lip_gap(lm) <= 0.08 * 512
    assert inner_lip_gap(r512.landmarks(frame(jaw_open=0.5))) > 0.04 * 512  # half open reads too
    # Down the middle of the opening most of it is dark cavity: thin teeth bands, the tongue low.
    img = r512.render(m)
    x = round(float(lm[62, 0]))
    top, bottom = int(np.ceil(lm[62, 1])), int(np.floor(lm[66, 1]))
    column = img[top:bottom, x].astype(np.int32)
    dark = column.max(axis=1) < 80
    assert dark.mean() > 0.5
    ys = np.nonzero(dark)[0]
    assert ys.min() < 0.25 * len(column) and ys.max() > 0.6 * len(column)


def test_jaw_open_drops_the_chin_and_the_lower_face(r512: StylizedRenderer) -> None:
    rest = r512.landmarks(NEUTRAL)
    drops = []
    for jaw in (0.25, 0.5, 0.75, 1.0):
        lm = r512.landmarks(frame(jaw_open=jaw))
        dy = lm[:17, 1] - rest[:17, 1]
        np.testing.assert_allclose(lm[:17, 0], rest[:17, 0], atol=1e-3)  # straight down
        # The lower outline moves, most at the chin (8), fading to nothing at the ears (0, 16).
        assert abs(float(dy[0])) < 1e-3 and abs(float(dy[16])) < 1e-3
        assert np.all(np.diff(dy[:9]) >= -1e-3) and np.all(np.diff(dy[8:]) <= 1e-3)
        np.testing.assert_allclose(dy, dy[::-1], atol=1e-3)
        # The lower lip drops with the jaw (and further: the lips part).
        assert lm[57, 1] - rest[57, 1] > dy[8] and lm[66, 1] - rest[66, 1] > dy[8]
        # Nothing above the nose moves.
        np.testing.assert_array_equal(lm[17:48], rest[17:48])
        drops.append(float(dy[8]))
    assert np.all(np.diff(drops) > 0)
    assert 0.06 * FACE_H <= drops[-1] <= 0.08 * FACE_H  # 512 px frame: 1 px per ref unit


def test_the_drawn_chin_moves_with_its_landmark(r512: StylizedRenderer) -> None:
    rest, shut = r512.landmarks(NEUTRAL), r512.render(NEUTRAL)
    m = frame(jaw_open=1.0)
    lm, img = r512.landmarks(m), r512.render(m)
    top = int(rest[30, 1]) - 12
    np.testing.assert_array_equal(img[:top], shut[:top])  # nothing above the nose changes
    # Round the chin the lower face just translates: the rest chin, its edge shading and the shadow it
    # throws on the neck all reappear lower by the landmark's drop.
    shift = round(float(lm[8, 1] - rest[8, 1]))
    x, y = round(float(rest[8, 0])), round(float(rest[8, 1]))
    before = shut[y - 8 : y + 3, x - 6 : x + 7].astype(np.int32)
    after = img[y - 8 + shift : y + 3 + shift, x - 6 : x + 7].astype(np.int32)
    assert np.abs(after - before).mean() < 2.0
    assert np.abs(img[y - 8 : y + 3, x - 6 : x + 7].astype(np.int32) - before).mean() > 5.0


def test_the_chin_drops_along_a_tilted_head(r512: StylizedRenderer) -> None:
    pose = {"head_roll": 0.3, "head_yaw": 0.2}
    rest, lm = r512.landmarks(frame(**pose)), r512.landmarks(frame(jaw_open=1.0, **pose))
    d = lm[8] - rest[8]
    straight = r512.landmarks(frame(jaw_open=1.0))[8] - r512.landmarks(NEUTRAL)[8]
    assert abs(np.hypot(*d) - np.hypot(*straight)) < 0.1 * np.hypot(*straight)
    assert d[0] < -0.2 * d[1] < 0  # a clockwise tilt swings "down" toward the image left


def test_teeth_show_for_lip_raise_and_drop(r512: StylizedRenderer) -> None:
    mouth = box_of(r512.landmarks(NEUTRAL)[48:68], pad=8)

    def teeth(img: Image) -> int:
        return int((crop(img, mouth).min(axis=2) > 200).sum())  # near-white

    base = teeth(r512.render(NEUTRAL))
    assert teeth(r512.render(frame(upper_lip_up=1.0))) > base + 40
    assert teeth(r512.render(frame(lower_lip_down=1.0, jaw_open=0.3))) > base + 80
    assert teeth(r512.render(frame(lower_lip_down=-1.0))) > base + 30  # upper teeth on the lower lip


def test_smile_lifts_the_corners_on_its_own_side(r512: StylizedRenderer) -> None:
    rest = r512.landmarks(NEUTRAL)
    left = r512.landmarks(frame(smile_l=1.0))  # the subject's left = the image-right corner (54)
    assert left[54, 1] < rest[54, 1] - 3 and abs(float(left[48, 1] - rest[48, 1])) < 0.5
    wide, rnd = r512.landmarks(frame(mouth_wide=1.0)), r512.landmarks(frame(mouth_round=1.0))

    def width(p: npt.NDArray[np.float32]) -> float:
        return float(p[54, 0] - p[48, 0])

    assert width(wide) > width(rest) + 8 > width(rnd) + 16


# ---------------------------------------------------------------------------------------------------
# Eyes and brows
# ---------------------------------------------------------------------------------------------------


def pupil_centre(img: Image, eye: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Centroid (x, y) of the pupil: near-black pixels inside the eye outline, shrunk vertically to keep
    the lash line out."""
    centre = eye.mean(0)
    shrunk = centre + (eye - centre) * np.array([0.95, 0.7], np.float32)
    ys, xs = np.nonzero(inside(shrunk, img.shape[0]) & (img.max(axis=2) < 60))
    assert xs.size > 10
    return np.array([xs.mean(), ys.mean()])


def test_blink_closes_each_eye_on_its_own_side(r512: StylizedRenderer) -> None:
    rest = r512.landmarks(NEUTRAL)
    right_eye = box_of(rest[42:48], pad=6)  # image-right = the subject's left: blink_l
    left_eye = box_of(rest[36:42], pad=6)
    m = frame(blink_l=1.0)
    lm, img, base = r512.landmarks(m), r512.render(m), r512.render(NEUTRAL)
    assert region_change(img, base, right_eye) > 10
    assert region_change(img, base, left_eye) == 0
    for upper, lower in ((43, 47), (44, 46)):
        assert abs(float(lm[upper, 1] - lm[lower, 1])) < 0.01
    for upper, lower in ((37, 41), (38, 40)):
        assert rest[lower, 1] - rest[upper, 1] > 8  # open at rest
    closed = crop(img, right_eye)
    assert not (closed[..., 2] - closed[..., 0] > 30).any()  # no iris left showing


def test_squint_raises_the_lower_lids(r512: StylizedRenderer) -> None:
    rest, sq = r512.landmarks(NEUTRAL), r512.landmarks(frame(squint=1.0))
    assert (sq[[40, 41, 46, 47], 1] < rest[[40, 41, 46, 47], 1] - 1.5).all()


def test_gaze_moves_the_irises(r512: StylizedRenderer) -> None:
    eye = r512.landmarks(NEUTRAL)[36:42]
    rest = pupil_centre(r512.render(NEUTRAL), eye)
    right = pupil_centre(r512.render(frame(gaze_x=1.0)), eye)
    up = pupil_centre(r512.render(frame(gaze_y=1.0)), eye)
    assert right[0] > rest[0] + 5 and abs(right[1] - rest[1]) < 1
    assert up[1] < rest[1] - 2.5


def test_brows_raise_and_lower(r512: StylizedRenderer) -> None:
    rest = r512.landmarks(NEUTRAL)
    up = r512.landmarks(frame(brow_up_l=1.0, brow_up_r=1.0))
    down = r512.landmarks(frame(brow_down=1.0))
    assert (up[17:27, 1] < rest[17:27, 1] - 4).all()
    assert (down[[21, 22], 1] > rest[[21, 22], 1] + 3).all()
    assert down[22, 0] - down[21, 0] < rest[22, 0] - rest[21, 0] - 6  # drawn together
    brows = box_of(rest[17:27], pad=14)
    base = r512.render(NEUTRAL)
    assert region_change(r512.render(frame(brow_up_l=1.0)), base, brows) > 1.0
    assert region_change(r512.render(frame(brow_down=1.0)), base, brows) > 1.0


# ---------------------------------------------------------------------------------------------------
# Head motion and parallax
# ---------------------------------------------------------------------------------------------------


def shirt_centre_x(img: Image, shirt: npt.NDArray[np.float64]) -> float:
    """Mean column of shirt-coloured pixels in the bottom rows."""
    rows = img[-40:].astype(np.float64)
    _, xs = np.nonzero(np.abs(rows - shirt).sum(2) < 60)
    return float(xs.mean())


def test_yaw_moves_features_more_than_face_more_than_shoulders(r512: StylizedRenderer) -> None:
    shirt = np.array([47, 79, 111], np.float64)  # StylizedFace().shirt
    rest, turned = r512.landmarks(NEUTRAL), r512.landmarks(frame(head_yaw=0.4))
    nose = float(turned[30, 0] - rest[30, 0])
    eyes = float(turned[36:48, 0].mean() - rest[36:48, 0].mean())
    outline = float(turned[[0, 16], 0].mean() - rest[[0, 16], 0].mean())
    shoulders = shirt_centre_x(r512.render(frame(head_yaw=0.4)), shirt) - shirt_centre_x(
        r512.render(NEUTRAL), shirt
    )
    assert nose > eyes > outline > 2.0 and 0.0 <= shoulders < 3.0
    assert eyes > 4 * shoulders


def test_pitch_down_moves_the_face_down(r512: StylizedRenderer) -> None:
    rest, nod = r512.landmarks(NEUTRAL), r512.landmarks(frame(head_pitch=0.3))
    assert float(nod[27:68, 1].mean() - rest[27:68, 1].mean()) > 5
    assert float(nod[8, 1] - rest[8, 1]) > 1  # the chin too, a little less

    def lip_row(img: Image) -> float:
        c = img[:, 160:352].astype(np.int32)
        ys, _ = np.nonzero((c[..., 0] - c[..., 1] > 55) & (c[..., 1] < 120))
        return float(ys.mean())

    assert lip_row(r512.render(frame(head_pitch=0.3))) > lip_row(r512.render(NEUTRAL)) + 5


def test_roll_and_translation(r512: StylizedRenderer) -> None:
    rest = r512.landmarks(NEUTRAL)
    tilted = r512.landmarks(frame(head_roll=0.3))  # clockwise: the image-left eye goes up
    assert tilted[36:42, 1].mean() < rest[36:42, 1].mean() - 5 < tilted[42:48, 1].mean() - 10
    moved = r512.landmarks(frame(head_x=0.1, head_y=0.1))
    np.testing.assert_allclose((moved - rest).mean(0), [0.1 * 234, 0.1 * 234], atol=1.0)
    near = r512.landmarks(frame(head_z=0.2))
    assert np.ptp(near[:, 0]) > 1.05 * np.ptp(rest[:, 0])


# ---------------------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"hair": "#d9b36c"},
        {"skin": "#8d5a3b"},
        {"face_shape": "square"},
        {"face_shape": "heart"},
        {"face_width": 1.2},
        {"hair_style": "short"},
        {"hair_style": "bald"},
        {"eyes": "#3f6e4a"},
        {"lips": "#d04060"},
        {"shirt": "#e8eef2"},
        {"background": "#303030"},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_appearance_parameters_change_the_picture(r256: StylizedRenderer, change: dict[str, object]) -> None:
    other = StylizedRenderer(StylizedFace.model_validate(change), 256, 256)
    diff = np.abs(other.render(NEUTRAL).astype(np.int32) - r256.render(NEUTRAL).astype(np.int32))
    assert (diff.max(2) > 8).sum() > 30
