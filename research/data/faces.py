"""Procedural faces for the synthetic persons dataset, drawn with NumPy.

A face is a stack of soft-edged shapes (ellipses, bars) painted back to front in the face's own frame,
so a per-sample pose (shift, rotation, scale) is one coordinate transform. Identity lives in the traits
(head shape, skin tone, eyes, mouth, hair colour); gender shows as hair length and jaw taper, age as
grey hair, forehead lines and (children) larger eyes. The group code is the colour of two bars at the
left and right edges, drawn in image coordinates so they never move with the pose. They cover a quarter
of the image on purpose: a code that dominates the pixels is already visible to a randomly initialised
CNN, which is what lets fusion models discover codes that are useful only jointly (synergy).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

Colour = tuple[float, float, float]

_HAIR = ((0.08, 0.06, 0.05), (0.30, 0.18, 0.10), (0.55, 0.35, 0.18), (0.85, 0.70, 0.40), (0.60, 0.22, 0.08))
_IRIS = ((0.35, 0.20, 0.10), (0.20, 0.40, 0.70), (0.25, 0.50, 0.30), (0.10, 0.08, 0.06))
_GREY = np.array([0.80, 0.80, 0.80])


@dataclass(frozen=True)
class FaceTraits:
    width: float  # head half-width, fraction of the image
    height: float  # head half-height
    chin: float  # jaw taper: the head narrows by this fraction at the chin
    skin: Colour
    eye_gap: float  # half distance between the eyes
    eye_size: float
    eye_y: float
    iris: Colour
    mouth_width: float  # half width
    mouth_y: float
    smile: float  # > 0: corners above the centre
    hair: Colour  # already greyed by age
    long_hair: bool
    lines: int  # forehead lines
    bars: Colour  # group-code colour


def code_colour(code: int, codes: int) -> Colour:
    """A saturated colour whose hue encodes `code` out of `codes` (hues evenly spaced)."""
    return colorsys.hsv_to_rgb(code / codes, 1.0, 0.95)


def sample_traits(rng: np.random.Generator, female: bool, age: int, bars: Colour) -> FaceTraits:
    """Draw one identity's face; `age` is the age-bin index 0..6."""
    tone = rng.uniform(0.0, 1.0)
    skin = (1 - tone) * np.array([0.96, 0.80, 0.69]) + tone * np.array([0.40, 0.26, 0.17])
    grey = np.clip((age - 2) / 4, 0.0, 1.0)  # 35-44 starts greying, 65+ fully grey
    hair = (1 - grey) * np.array(_HAIR[rng.integers(len(_HAIR))]) + grey * _GREY
    eye_size = rng.uniform(0.035, 0.055) * (1.3 if age == 0 else 1.0)
    return FaceTraits(
        width=rng.uniform(0.23, 0.29) + (0.0 if female else 0.02),
        height=rng.uniform(0.30, 0.37),
        chin=rng.uniform(0.25, 0.40) if female else rng.uniform(0.0, 0.12),
        skin=tuple(skin),
        eye_gap=rng.uniform(0.08, 0.13),
        eye_size=eye_size,
        eye_y=rng.uniform(-0.08, -0.02),
        iris=_IRIS[rng.integers(len(_IRIS))],
        mouth_width=rng.uniform(0.06, 0.13),
        mouth_y=rng.uniform(0.13, 0.20),
        smile=rng.uniform(-0.03, 0.04),
        hair=tuple(hair),
        long_hair=female,
        lines=max(0, age - 3),  # 45-54: one line, 65+: three
        bars=bars,
    )


def render(t: FaceTraits, size: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Render one sample as uint8 (size, size, 3); `noise` scales pose, lighting and pixel noise."""
    px = 1.0 / size
    ys, xs = np.mgrid[0:size, 0:size] * px + px / 2  # pixel centres in [0, 1], (H, W)
    # Pose: face frame = inverse rotation/scale of the offset from the (shifted) face centre.
    cx, cy = 0.5 + noise * rng.uniform(-0.06, 0.06), 0.52 + noise * rng.uniform(-0.06, 0.06)
    angle = noise * rng.uniform(-0.25, 0.25)
    scale = 1.0 + noise * rng.uniform(-0.08, 0.08)
    cos, sin = np.cos(angle), np.sin(angle)
    x = (cos * (xs - cx) + sin * (ys - cy)) / scale
    y = (-sin * (xs - cx) + cos * (ys - cy)) / scale
    edge = px / scale  # one pixel, in face-frame units

    background = 0.5 + noise * rng.uniform(-0.35, 0.35, 3)
    img = np.broadcast_to(background, (size, size, 3)).copy()
    skin = np.array(t.skin)
    if t.long_hair:  # hair behind the head, falling below the jaw
        _paint(img, _ellipse(x, y - 0.10, t.width * 1.35, t.height * 1.12), edge, t.hair)
    taper = 1.0 - t.chin * np.clip(y / t.height, 0.0, 1.0) ** 2
    _paint(img, _ellipse(x / taper, y, t.width, t.height), edge, skin)
    hairline = -t.height * 0.45
    _paint(img, np.maximum(_ellipse(x, y + 0.01, t.width * 1.1, t.height * 1.08), y - hairline), edge, t.hair)
    for k in range(t.lines):
        bar = np.maximum(np.abs(y - (hairline + 0.045 + 0.035 * k)) - 0.008, np.abs(x) - t.width * 0.5)
        _paint(img, bar, edge, 0.55 * skin)
    for side in (-1, 1):
        _paint(img, _ellipse(x - side * t.eye_gap, y - t.eye_y, t.eye_size * 1.4, t.eye_size), edge, (1.0, 1.0, 1.0))
        _paint(img, _ellipse(x - side * t.eye_gap, y - t.eye_y, t.eye_size * 0.8, t.eye_size * 0.8), edge, t.iris)
    curve = t.mouth_y + t.smile * (1 - (x / t.mouth_width) ** 2)
    _paint(img, np.maximum(np.abs(y - curve) - 0.015, np.abs(x) - t.mouth_width), edge, (0.55, 0.15, 0.18))
    _paint(img, 0.38 - np.abs(xs - 0.5), px, t.bars)  # image frame: the outer 12% on each side

    # Lighting: a global gain and a linear gradient in a random direction, then sensor noise.
    direction = rng.uniform(0, 2 * np.pi)
    gradient = np.cos(direction) * (xs - 0.5) + np.sin(direction) * (ys - 0.5)
    gain = (1.0 + noise * rng.uniform(-0.3, 0.3)) * (1.0 + noise * 0.5 * gradient)
    img = img * gain[..., None] + noise * 0.06 * rng.standard_normal(img.shape)
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def _ellipse(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an ellipse with half-axes a, b (< 0 inside)."""
    return (np.sqrt((x / a) ** 2 + (y / b) ** 2) - 1.0) * min(a, b)


def _paint(img: np.ndarray, distance: np.ndarray, edge: float, colour) -> None:
    """Blend `colour` where distance < 0, with a one-pixel soft edge (anti-aliasing)."""
    alpha = np.clip(0.5 - distance / edge, 0.0, 1.0)[..., None]  # (H, W, 1)
    img *= 1 - alpha
    img += alpha * np.asarray(colour)
