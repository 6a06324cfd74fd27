"""Face augmentations with Pillow and NumPy on a decoded face (3, H, W) uint8, drawing from one random stream.

In this order, each with its probability (data.augment): RandomResizedCrop, horizontal flip, ColorJitter
(brightness, contrast, saturation in a random order), as torchvision defines them (torchvision.transforms:
RandomResizedCrop.get_params, ColorJitter on PIL images through ImageEnhance); then, with face_policy = trivial,
one TrivialAugment op (Mueller & Hutter 2021, "TrivialAugment: tuning-free yet state-of-the-art data
augmentation"): an op picked uniformly, at a magnitude picked uniformly from 31 bins of torchvision's
TrivialAugmentWide space (signed ops negated half the time), applied with PIL as the AutoAugment reference
code does (shear and translate as affine maps, nearest neighbour, black fill).

albumentations would pull OpenCV (opencv-python-headless) into the project, so the ops are written with Pillow.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from research.config import AugmentConfig

BINS = 31  # TrivialAugmentWide's magnitude bins
ENHANCE = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast, "color": ImageEnhance.Color}


def augment(face: np.ndarray, cfg: AugmentConfig, r: np.random.Generator) -> np.ndarray:
    """(3, H, W) uint8 -> (3, H, W) uint8, a new array (the cache's face is never written)."""
    image = Image.fromarray(np.ascontiguousarray(face.transpose(1, 2, 0)))  # (H, W, 3)
    if r.random() < cfg.crop_prob:
        scale, ratio = (cfg.crop_scale_min, cfg.crop_scale_max), (cfg.crop_ratio_min, cfg.crop_ratio_max)
        top, left, h, w = crop_box(image.height, image.width, scale, ratio, r)
        image = image.crop((left, top, left + w, top + h)).resize(image.size, Image.Resampling.BILINEAR)
    if r.random() < cfg.flip_prob:
        image = ImageOps.mirror(image)
    if r.random() < cfg.jitter_prob:
        factors = {name: r.uniform(max(0.0, 1 - cfg.jitter), 1 + cfg.jitter) for name in ENHANCE}
        for name in np.array(list(ENHANCE))[r.permutation(len(ENHANCE))]:
            image = ENHANCE[name](image).enhance(factors[name])
    if cfg.face_policy == "trivial":
        image = trivial(image, r)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def crop_box(
    height: int, width: int, scale: tuple[float, ...], ratio: tuple[float, ...], r: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering `scale` of the area at aspect `ratio` (log-uniform): torchvision's
    RandomResizedCrop.get_params, 10 tries, then the central crop of the nearest allowed aspect ratio."""
    area, log_ratio = height * width, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target, aspect = area * r.uniform(*scale), math.exp(r.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(r.integers(height - h + 1)), int(r.integers(width - w + 1)), h, w
    if width / height < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif width / height > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _affine(image: Image.Image, matrix: tuple[float, ...]) -> Image.Image:
    return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=(0, 0, 0))


# TrivialAugmentWide (torchvision.transforms.TrivialAugmentWide._augmentation_space): op -> (magnitudes, signed).
_LINEAR = np.linspace(0.0, 0.99, BINS)
SPACE = {
    "identity": (np.zeros(BINS), False),
    "shear_x": (_LINEAR, True),
    "shear_y": (_LINEAR, True),
    "translate_x": (np.linspace(0.0, 32.0, BINS), True),  # pixels
    "translate_y": (np.linspace(0.0, 32.0, BINS), True),
    "rotate": (np.linspace(0.0, 135.0, BINS), True),  # degrees
    "brightness": (_LINEAR, True),
    "color": (_LINEAR, True),
    "contrast": (_LINEAR, True),
    "sharpness": (_LINEAR, True),
    "posterize": (8 - np.round(np.arange(BINS) / ((BINS - 1) / 6)), False),  # bits kept: 8 .. 2
    "solarize": (np.linspace(255.0, 0.0, BINS), False),  # threshold
    "autocontrast": (np.zeros(BINS), False),
    "equalize": (np.zeros(BINS), False),
}
OPS = {
    "identity": lambda im, m: im,
    "shear_x": lambda im, m: _affine(im, (1, m, 0, 0, 1, 0)),
    "shear_y": lambda im, m: _affine(im, (1, 0, 0, m, 1, 0)),
    "translate_x": lambda im, m: _affine(im, (1, 0, m, 0, 1, 0)),
    "translate_y": lambda im, m: _affine(im, (1, 0, 0, 0, 1, m)),
    "rotate": lambda im, m: im.rotate(m, Image.Resampling.NEAREST, fillcolor=(0, 0, 0)),
    "brightness": lambda im, m: ImageEnhance.Brightness(im).enhance(1 + m),
    "color": lambda im, m: ImageEnhance.Color(im).enhance(1 + m),
    "contrast": lambda im, m: ImageEnhance.Contrast(im).enhance(1 + m),
    "sharpness": lambda im, m: ImageEnhance.Sharpness(im).enhance(1 + m),
    "posterize": lambda im, m: ImageOps.posterize(im, int(m)),
    "solarize": lambda im, m: ImageOps.solarize(im, m),
    "autocontrast": lambda im, m: ImageOps.autocontrast(im),
    "equalize": lambda im, m: ImageOps.equalize(im),
}


def trivial(image: Image.Image, r: np.random.Generator) -> Image.Image:
    """One op of SPACE, uniformly, at a uniform magnitude bin; a signed op's magnitude is negated half the time."""
    name = list(SPACE)[r.integers(len(SPACE))]
    magnitudes, signed = SPACE[name]
    m = float(magnitudes[r.integers(BINS)])
    if signed and r.random() < 0.5:
        m = -m
    return OPS[name](image, m)
