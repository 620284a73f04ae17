"""Transforms on one image and on batches, against per-image reference loops."""
import numpy as np
import pytest

import fastconv
from fastconv.data import transforms as T


@pytest.fixture
def batch(rng):
    return rng.random((6, 3, 7, 9), dtype=np.float32)


def test_normalize_per_channel(batch):
    mean, std = (0.1, 0.2, 0.3), (0.5, 1.0, 2.0)
    out = T.Normalize(mean, std)(batch)
    assert out.dtype == np.float32 and out.shape == batch.shape
    for c in range(3):
        np.testing.assert_allclose(out[:, c], (batch[:, c] - mean[c]) / std[c], rtol=1e-6)
    np.testing.assert_array_equal(T.Normalize(mean, std)(batch[2]), out[2])
    one = T.Normalize(0.5, 0.25)(batch)
    np.testing.assert_allclose(one, (batch - 0.5) / 0.25, rtol=1e-6)
    assert T.Normalize(mean, std)(batch.astype(np.float64)).dtype == np.float64
    copy = batch.copy()
    T.Normalize(mean, std, inplace=True)(copy)
    np.testing.assert_array_equal(copy, out)
    with pytest.raises(ValueError, match="1 or 3 values"):
        T.Normalize((0.1, 0.2), (1, 1))(batch)
    with pytest.raises(ValueError, match="non-zero"):
        T.Normalize(0, 0)


def _reference_crop(batch, size, pad_h, pad_w, tops, lefts):
    out = []
    for img, top, left in zip(batch, tops, lefts):
        padded = np.pad(img, ((0, 0), (pad_h, pad_h), (pad_w, pad_w)))
        out.append(padded[:, top:top + size[0], left:left + size[1]])
    return np.stack(out)


@pytest.mark.parametrize("size, padding", [(7, 0), ((5, 6), 0), ((7, 9), 2), (8, (1, 3)),
                                           ((11, 13), 2)])
def test_random_crop_matches_reference(batch, size, padding):
    crop = T.RandomCrop(size, padding=padding, generator=42)
    out = crop(batch)
    sh, sw = (size, size) if isinstance(size, int) else size
    pw, ph = (padding, padding) if isinstance(padding, int) else padding
    draws = np.random.default_rng(42)
    tops = draws.integers(0, 7 + 2 * ph - sh + 1, size=6)
    lefts = draws.integers(0, 9 + 2 * pw - sw + 1, size=6)
    assert out.shape == (6, 3, sh, sw) and out.dtype == np.float32
    np.testing.assert_array_equal(out, _reference_crop(batch, (sh, sw), ph, pw, tops, lefts))


def test_random_crop_single_image_and_errors(batch):
    img = batch[0]
    out = T.RandomCrop(7, padding=3, generator=0)(img)
    assert out.shape == (3, 7, 7)
    g = np.random.default_rng(0)
    top, left = g.integers(0, 7, size=1)[0], g.integers(0, 9, size=1)[0]
    np.testing.assert_array_equal(out, _reference_crop(img[None], (7, 7), 3, 3, [top], [left])[0])
    # Padding 4 and crop back to the input size: offsets span all 9 positions.
    tops = {tuple(np.argwhere(T.RandomCrop((7, 9), padding=4)(np.ones((1, 1, 7, 9),
            np.float32))[0, 0])[0]) for _ in range(200)}
    assert len(tops) > 20
    with pytest.raises(ValueError, match="larger than the padded input"):
        T.RandomCrop(10)(batch)
    with pytest.raises(ValueError):
        T.RandomCrop(0)
    with pytest.raises(TypeError):
        T.RandomCrop(5, padding=1.5)
    with pytest.raises(ValueError, match="shape"):
        T.RandomCrop(2)(np.zeros((4, 4), np.float32))


def test_horizontal_flip(batch):
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0)(batch), batch)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1)(batch), batch[..., ::-1])
    out = T.RandomHorizontalFlip(generator=5)(batch)
    flips = np.random.default_rng(5).random(6) < 0.5
    assert 0 < flips.sum() < 6
    for img, o, f in zip(batch, out, flips):
        np.testing.assert_array_equal(o, img[..., ::-1] if f else img)
    single = T.RandomHorizontalFlip(p=1)(batch[1])
    np.testing.assert_array_equal(single, batch[1][..., ::-1])
    with pytest.raises(ValueError):
        T.RandomHorizontalFlip(p=1.5)


def test_determinism_and_no_mutation(batch):
    before = batch.copy()
    aug = T.Compose([T.RandomCrop(7, padding=2), T.RandomHorizontalFlip(),
                     T.Normalize((0.5,) * 3, (0.2,) * 3)])
    fastconv.manual_seed(3)
    a = aug(batch)
    b = aug(batch)
    fastconv.manual_seed(3)
    np.testing.assert_array_equal(aug(batch), a)
    np.testing.assert_array_equal(aug(batch), b)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(batch, before)
    g1 = T.RandomCrop(7, padding=2, generator=np.random.default_rng(9))
    g2 = T.RandomCrop(7, padding=2, generator=9)
    np.testing.assert_array_equal(g1(batch), g2(batch))
    assert "RandomCrop" in repr(aug)
