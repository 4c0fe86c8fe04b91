"""The portrait renderer, on a real photo with real dlib landmarks.

The photo is scikit-image's ``astronaut``: a public-domain NASA portrait, 512x512 RGB, one frontal face.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from skimage import data as skimage_data

from avatar_core import motion
from avatar_core.config import AppearanceConfig, VideoConfig
from avatar_core.render import make_renderer
from avatar_core.render.base import Renderer, inner_lip_gap
from avatar_core.render.portrait import PortraitError, PortraitRenderer

Photo = npt.NDArray[np.uint8]
FIX = "use a frontal photo with exactly one face at least 80 px wide"


@pytest.fixture(scope="module")
def photo() -> Photo:
    return np.ascontiguousarray(skimage_data.astronaut(), np.uint8)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def small(photo: Photo) -> PortraitRenderer:
    return PortraitRenderer(photo, 256, 256)


@pytest.fixture(scope="module")
def large(photo: Photo) -> PortraitRenderer:
    return PortraitRenderer(photo, 512, 512)


def box(points: npt.NDArray[np.float32], pad: float) -> tuple[slice, slice]:
    """The rows and columns around some landmarks, ``pad`` pixels wider on each side."""
    x0, y0 = np.floor(points.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + pad).astype(int)
    return slice(max(0, y0), y1), slice(max(0, x0), x1)


def change(a: Photo, b: Photo, where: tuple[slice, slice]) -> float:
    """Mean absolute difference of two images inside a region."""
    return float(np.abs(a[where].astype(np.int16) - b[where].astype(np.int16)).mean())


# ---------------------------------------------------------------------------------------------------
# The renderer seam
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [256, 512])
def test_renders_rgb_frames_and_landmarks_of_its_size(
    size: int, small: PortraitRenderer, large: PortraitRenderer
) -> None:
    renderer = small if size == 256 else large
    assert isinstance(renderer, Renderer)
    assert (renderer.width, renderer.height) == (size, size)
    image = renderer.render(motion.NEUTRAL)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    points = renderer.landmarks(motion.NEUTRAL)
    assert points.shape == (68, 2) and points.dtype == np.float32
    assert (points >= 0).all() and (points < size).all()


def test_frames_the_face_centred_at_about_half_the_height(small: PortraitRenderer) -> None:
    points = small.landmarks(motion.NEUTRAL)
    eyes = points[36:48].mean(axis=0)
    face_height = 1.6 * float(np.linalg.norm(points[8] - eyes))  # hairline to chin, about
    assert 0.38 * small.height < face_height < 0.52 * small.height
    assert abs(float(points[27, 0]) - small.width / 2) < 0.15 * small.width


def test_non_square_frames(photo: Photo) -> None:
    renderer = PortraitRenderer(photo, 320, 192)
    image = renderer.render(motion.frame(jaw_open=0.5, head_roll=0.2))
    assert image.shape == (192, 320, 3)


def test_make_renderer_builds_it_from_a_persona_photo(photo: Photo, tmp_path: Path) -> None:
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    appearance = AppearanceConfig(
        renderer="portrait", portrait=path, video=VideoConfig(width=128, height=128)
    )
    renderer = make_renderer(appearance)
    assert isinstance(renderer, PortraitRenderer)
    assert renderer.render(motion.NEUTRAL).shape == (128, 128, 3)


def test_render_is_deterministic(small: PortraitRenderer, photo: Photo) -> None:
    frame = motion.frame(jaw_open=0.4, smile_l=0.5, blink_r=0.7, gaze_x=0.3, head_yaw=0.2, head_roll=-0.1)
    first = small.render(frame)
    assert np.array_equal(first, small.render(frame))
    assert np.array_equal(small.landmarks(frame), small.landmarks(frame))
    # Building the rig twice from the same photo gives the same renderer.
    assert np.array_equal(first, PortraitRenderer(photo, 256, 256).render(frame))


def test_never_fails_or_goes_nan_over_the_motion_range(small: PortraitRenderer) -> None:
    rng = np.random.default_rng(7)
    corners = np.where(rng.random((12, motion.MOTION_DIM)) < 0.5, motion.LOW, motion.HIGH)
    uniform = motion.LOW + (motion.HIGH - motion.LOW) * rng.random((30, motion.MOTION_DIM))
    frames = [motion.LOW, motion.HIGH, *corners.astype(np.float32), *uniform.astype(np.float32)]
    frames += [np.full(motion.MOTION_DIM, 9.0, np.float32), np.full(motion.MOTION_DIM, np.nan, np.float32)]
    for frame in frames:
        image = small.render(frame)
        points = small.landmarks(frame)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert np.isfinite(points).all()


def test_out_of_range_motion_is_clipped(small: PortraitRenderer) -> None:
    beyond = motion.frame(jaw_open=3.0, head_roll=2.0)
    limit = motion.frame(jaw_open=1.0, head_roll=0.4)
    assert np.array_equal(small.render(beyond), small.render(limit))


# ---------------------------------------------------------------------------------------------------
# Mouth
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{}, {"head_roll": 0.3, "head_yaw": -0.4}, {"mouth_round": 1.0, "lower_lip_down": 1.0, "smile_l": 1.0}],
)
def test_pressed_lips_touch_even_with_the_jaw_open(small: PortraitRenderer, extra: dict[str, float]) -> None:
    points = small.landmarks(motion.frame(jaw_open=0.8, lips_pressed=1.0, **extra))
    assert inner_lip_gap(points) == 0.0


def test_open_jaw_parts_the_lips_and_shows_a_dark_mouth(large: PortraitRenderer) -> None:
    frame = motion.frame(jaw_open=0.8)
    points = large.landmarks(frame)
    assert inner_lip_gap(points) > 15.0
    assert inner_lip_gap(points) > inner_lip_gap(large.landmarks(motion.NEUTRAL)) + 10.0
    inside = np.zeros((large.height, large.width), np.uint8)
    cv2.fillPoly(inside, [np.round(points[60:68]).astype(np.int32)], 1)
    luma = cv2.cvtColor(large.render(frame), cv2.COLOR_RGB2GRAY)[inside > 0]
    assert (luma < 70).mean() > 0.4  # mostly cavity; the rest teeth and tongue


def test_jaw_open_lowers_the_chin(small: PortraitRenderer) -> None:
    before = small.landmarks(motion.NEUTRAL)
    after = small.landmarks(motion.frame(jaw_open=1.0))
    assert after[8, 1] - before[8, 1] > 5.0
    assert np.allclose(after[17:48], before[17:48])  # brows and eyes stay


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("jaw_open", 0.6),
        ("mouth_wide", 1.0),
        ("mouth_round", 1.0),
        ("lips_pressed", 1.0),
        ("upper_lip_up", 1.0),
        ("lower_lip_down", 1.0),
        ("lower_lip_down", -1.0),
        ("smile_l", 1.0),
        ("smile_r", 1.0),
    ],
)
def test_each_mouth_field_changes_the_mouth(small: PortraitRenderer, field: str, value: float) -> None:
    neutral = small.render(motion.NEUTRAL)
    image = small.render(motion.frame(**{field: value}))
    mouth = box(small.landmarks(motion.NEUTRAL)[48:68], 4)
    assert change(neutral, image, mouth) > 1.5
    brows = box(small.landmarks(motion.NEUTRAL)[17:27], 1)
    assert change(neutral, image, brows) < 0.5


def test_smiles_lift_their_own_corner(small: PortraitRenderer) -> None:
    rest = small.landmarks(motion.NEUTRAL)
    left = small.landmarks(motion.frame(smile_l=1.0))  # the avatar's left: the viewer's right, point 54
    right = small.landmarks(motion.frame(smile_r=1.0))
    assert left[54, 1] < rest[54, 1] - 1.0 and left[48, 1] == pytest.approx(rest[48, 1])
    assert right[48, 1] < rest[48, 1] - 1.0 and right[54, 1] == pytest.approx(rest[54, 1])


# ---------------------------------------------------------------------------------------------------
# Eyes and brows
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "eye", "other", "pairs"),
    [
        ("blink_l", slice(42, 48), slice(36, 42), [(43, 47), (44, 46)]),
        ("blink_r", slice(36, 42), slice(42, 48), [(37, 41), (38, 40)]),
    ],
)
def test_blink_closes_one_eye(
    small: PortraitRenderer, field: str, eye: slice, other: slice, pairs: list[tuple[int, int]]
) -> None:
    points = small.landmarks(motion.frame(**{field: 1.0}))
    for upper, lower in pairs:
        assert np.array_equal(points[upper], points[lower])
    rest = small.landmarks(motion.NEUTRAL)
    neutral = small.render(motion.NEUTRAL)
    image = small.render(motion.frame(**{field: 1.0}))
    assert change(neutral, image, box(rest[eye], 1)) > 3.0
    assert change(neutral, image, box(rest[other], 1)) < 0.5
    half = small.landmarks(motion.frame(**{field: 0.5}))
    upper, lower = pairs[0]
    assert rest[upper, 1] < half[upper, 1] < rest[lower, 1]


def test_brows_and_gaze_move_their_features(small: PortraitRenderer) -> None:
    rest = small.landmarks(motion.NEUTRAL)
    up = small.landmarks(motion.frame(brow_up_l=1.0, brow_up_r=1.0))
    assert (up[17:27, 1] < rest[17:27, 1] - 1.0).all()
    down = small.landmarks(motion.frame(brow_down=1.0))
    assert (down[17:27, 1] > rest[17:27, 1]).all()
    neutral = small.render(motion.NEUTRAL)
    looking = small.render(motion.frame(gaze_x=1.0))
    assert change(neutral, looking, box(rest[36:48], 0)) > 1.0


# ---------------------------------------------------------------------------------------------------
# Head
# ---------------------------------------------------------------------------------------------------


def test_head_roll_tilts_the_face_clockwise(small: PortraitRenderer) -> None:
    def tilt(points: npt.NDArray[np.float32]) -> float:
        dx, dy = points[42:48].mean(axis=0) - points[36:42].mean(axis=0)
        return float(np.arctan2(dy, dx))

    rest = small.landmarks(motion.NEUTRAL)
    rolled = small.landmarks(motion.frame(head_roll=0.2))
    assert tilt(rolled) - tilt(rest) == pytest.approx(0.2, abs=1e-3)  # clockwise on screen, y down
    neutral = small.render(motion.NEUTRAL)
    assert change(neutral, small.render(motion.frame(head_roll=0.2)), box(rest, 0)) > 5.0


def test_head_yaw_and_translation_move_the_face(small: PortraitRenderer) -> None:
    rest = small.landmarks(motion.NEUTRAL)
    turned = small.landmarks(motion.frame(head_yaw=0.4))
    assert turned[30, 0] - rest[30, 0] > 3.0  # toward the viewer's right
    assert turned[30, 0] - rest[30, 0] > turned[0, 0] - rest[0, 0]  # the nose more than the face edge
    shifted = small.landmarks(motion.frame(head_x=0.2, head_y=0.1))
    assert (shifted[:, 0] - rest[:, 0] > 5.0).all() and (shifted[:, 1] > rest[:, 1]).all()
    nearer = small.landmarks(motion.frame(head_z=0.2))
    assert np.ptp(nearer[:, 0]) > np.ptp(rest[:, 0])
    neutral = small.render(motion.NEUTRAL)
    assert change(neutral, small.render(motion.frame(head_yaw=0.4)), box(rest, 0)) > 3.0


@pytest.mark.parametrize(
    "frame", [motion.frame(head_roll=0.3), motion.frame(head_yaw=-0.5), motion.frame(head_x=0.2, head_y=0.1)]
)
def test_head_motion_leaves_the_frame_border_and_body_fixed(
    small: PortraitRenderer, frame: npt.NDArray[np.float32]
) -> None:
    neutral = small.render(motion.NEUTRAL)
    image = small.render(frame)
    assert np.array_equal(image[:, :2], neutral[:, :2]) and np.array_equal(image[:, -2:], neutral[:, -2:])
    assert np.array_equal(image[-12:], neutral[-12:])


# ---------------------------------------------------------------------------------------------------
# Photos it cannot use
# ---------------------------------------------------------------------------------------------------


def test_a_photo_without_a_face_is_refused() -> None:
    with pytest.raises(PortraitError, match="no face") as caught:
        PortraitRenderer(np.full((400, 400, 3), 128, np.uint8))
    assert FIX in str(caught.value)


def test_a_photo_with_two_faces_is_refused(photo: Photo) -> None:
    with pytest.raises(PortraitError, match="2 faces") as caught:
        PortraitRenderer(np.hstack([photo, photo]))
    assert FIX in str(caught.value)


def test_a_face_too_small_is_refused(photo: Photo) -> None:
    tiny = np.asarray(cv2.resize(photo, (64, 64), interpolation=cv2.INTER_AREA), np.uint8)
    with pytest.raises(PortraitError, match=r"only \d+ px wide") as caught:
        PortraitRenderer(tiny)
    assert FIX in str(caught.value)


def test_a_missing_or_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PortraitError, match="not found"):
        PortraitRenderer(tmp_path / "nobody.jpg")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    with pytest.raises(PortraitError, match="cannot read"):
        PortraitRenderer(broken)
    with pytest.raises(PortraitError, match="uint8 RGB"):
        PortraitRenderer(np.zeros((64, 64, 3), np.float32))
