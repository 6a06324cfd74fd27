"""Face augmentation (research/data/augment_face.py) against NumPy / Pillow references: the flip mirrors, the
resized crop's box follows torchvision's rules, jitter and the TrivialAugment ops keep shape and dtype and are
the identity at magnitude 0, ops are drawn uniformly; the input array (the cache's) is never written, and a
missing face is left as it is."""

import numpy as np
from PIL import Image, ImageEnhance

from research.config import AugmentConfig
from research.data import augment, augment_face, augment_plan


def face(seed: int = 0, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(3, size, size), dtype=np.uint8)


def test_the_flip_mirrors_and_the_input_is_not_written():
    x = face()
    before = x.copy()
    out = augment_face.augment(x, AugmentConfig(flip_prob=1.0), np.random.default_rng(0))
    np.testing.assert_array_equal(out, before[:, :, ::-1])
    np.testing.assert_array_equal(x, before)
    assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_the_resized_crop_box_lies_in_the_image_with_its_area_and_aspect_in_range():
    r = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = augment_face.crop_box(32, 24, (0.3, 1.0), (0.75, 4 / 3), r)
        assert 0 <= top and top + h <= 32 and 0 <= left and left + w <= 24 and h > 0 and w > 0
        assert 0.3 * 32 * 24 * 0.75 <= h * w <= 32 * 24  # rounding of w and h loosens the lower bound a little
    assert augment_face.crop_box(16, 16, (1.0, 1.0), (1.0, 1.0), r) == (0, 0, 16, 16)
    assert augment_face.crop_box(10, 40, (1.0, 1.0), (1.0, 1.0), r) == (0, 15, 10, 10)  # fallback: central crop
    out = augment_face.augment(face(), AugmentConfig(crop_prob=1.0), np.random.default_rng(1))
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8


def test_colour_jitter_is_pillows_enhancements_and_none_at_strength_zero():
    x = face(1)
    same = augment_face.augment(x, AugmentConfig(jitter_prob=1.0, jitter=0.0), np.random.default_rng(0))
    np.testing.assert_array_equal(same, x)
    out = augment_face.augment(x, AugmentConfig(jitter_prob=1.0), np.random.default_rng(0))
    r = np.random.default_rng(0)
    r.random(), r.random()  # crop and flip decisions
    assert r.random() < 1.0
    factors = {name: r.uniform(0.6, 1.4) for name in ("brightness", "contrast", "color")}
    image = Image.fromarray(np.ascontiguousarray(x.transpose(1, 2, 0)))
    enhance = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast, "color": ImageEnhance.Color}
    for name in np.array(list(factors))[r.permutation(3)]:  # torchvision's random order
        image = enhance[name](image).enhance(factors[name])
    np.testing.assert_array_equal(out, np.asarray(image).transpose(2, 0, 1))


def test_every_trivialaugment_op_keeps_shape_and_dtype_and_magnitude_zero_of_a_signed_op_changes_nothing():
    image = Image.fromarray(face(2).transpose(1, 2, 0))
    for name, (magnitudes, signed) in augment_face.SPACE.items():
        for m in (magnitudes[0], magnitudes[-1], -magnitudes[-1] if signed else magnitudes[15]):
            out = augment_face.OPS[name](image, float(m))
            assert out.size == image.size and out.mode == "RGB", name
        if signed:
            np.testing.assert_array_equal(np.asarray(augment_face.OPS[name](image, 0.0)), np.asarray(image), name)


def test_trivialaugment_draws_its_ops_uniformly_and_is_fixed_by_its_stream():
    counts = dict.fromkeys(augment_face.SPACE, 0)
    image = Image.fromarray(face(3).transpose(1, 2, 0))
    for seed in range(1400):
        r = np.random.default_rng(seed)
        counts[list(augment_face.SPACE)[np.random.default_rng(seed).integers(len(augment_face.SPACE))]] += 1
        augment_face.trivial(image, r)
    assert all(60 <= c <= 140 for c in counts.values()), counts  # 100 expected each
    cfg = AugmentConfig(face_policy="trivial", crop_prob=0.5, flip_prob=0.5, jitter_prob=0.5)
    for index in range(20):
        first = augment_face.augment(face(4), cfg, augment_plan.stream(0, 1, index, "face"))
        np.testing.assert_array_equal(
            first, augment_face.augment(face(4), cfg, augment_plan.stream(0, 1, index, "face"))
        )


def test_a_missing_face_is_not_augmented():
    p = augment_plan.Plan(AugmentConfig(face_policy="trivial", jitter_prob=1.0), 16000, 0, {}, ())
    grey = np.full((3, 16, 16), 100, np.uint8)  # a missing face is zeros; grey shows what brightness would do
    present = np.array([True, False])
    record = {"index": np.int64(1), "face": grey, "voice": np.zeros(0, np.float32)}
    assert augment.Recording(p, 0, 0, present).map(record)["face"] is grey
    record["index"] = np.int64(0)
    assert (augment.Recording(p, 0, 0, present).map(record)["face"] != grey).any()
