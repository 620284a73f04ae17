"""Transforms on float32 images: one image (C, H, W) or, vectorised, a batch (B, C, H, W).

Datasets apply their ``transform`` to whole batches in ``get_batch`` (what the ``DataLoader``
calls), so each transform here does its per-image work with a few NumPy calls over the batch
rather than a Python loop over images. Transforms never modify their input array.

Random transforms draw from the ``generator`` they were given (an ``np.random.Generator`` or
an int seed for a private one); without one they draw from ``fastconv._config.default_rng()``
at call time, so ``fastconv.manual_seed(s)`` makes a whole training run reproducible.
"""
import numbers

import numpy as np

from .. import _config

__all__ = ["Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip"]


def _as_batch(x, who):
    """(batch view (B, C, H, W), whether ``x`` was a single image)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{who}: expected an ndarray image (C, H, W) or batch (B, C, H, W), "
                        f"got {type(x).__name__}")
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"{who}: expected an image (C, H, W) or a batch (B, C, H, W), got shape "
                     f"{x.shape}")


def _make_generator(generator, who):
    if generator is None or isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"{who}: expected generator None, an int seed or a numpy Generator, got "
                    f"{type(generator).__name__}")


def _pair(value, name, who, minimum):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)):
        value = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{who}: expected {name} an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{who}: expected {name} >= {minimum}, got {value}")
    return value


class _Random:
    def _rng(self):
        return self.generator if self.generator is not None else _config.default_rng()


class Compose:
    """Apply ``transforms`` in order.

    >>> t = Compose([RandomCrop(28, padding=4), Normalize((0.1307,), (0.3081,))])
    """

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: expected callables, got {type(t).__name__}")

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class Normalize:
    """``(x - mean[c]) / std[c]`` for each channel ``c``, as ``torchvision``'s ``Normalize``.

    Parameters
    ----------
    mean, std : float or sequence of float
        One value per channel (or one for all). ``std`` must be non-zero.
    inplace : bool, default False
        Overwrite the input array instead of returning a new one.
    """

    def __init__(self, mean, std, inplace=False):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1:
            raise ValueError("Normalize: expected mean and std scalars or 1-D sequences, got "
                             f"shapes {self.mean.shape} and {self.std.shape}")
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be non-zero, got {self.std.tolist()}")
        self.inplace = bool(inplace)

    def __call__(self, x):
        batch, _ = _as_batch(x, "Normalize")
        c = batch.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, c):
                raise ValueError(f"Normalize: expected {name} with 1 or {c} values for {c} "
                                 f"channels, got {len(v)}")
        dtype = x.dtype if x.dtype.kind == "f" else np.float32
        mean = self.mean.astype(dtype).reshape(-1, 1, 1)
        std = self.std.astype(dtype).reshape(-1, 1, 1)
        if self.inplace and x.dtype.kind == "f":
            x -= mean
            x /= std
            return x
        return ((x - mean) / std).astype(dtype, copy=False)

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop(_Random):
    """Zero-pad by ``padding`` on each side, then crop ``size`` at a random offset per image.

    Parameters
    ----------
    size : int or (h, w)
        Output height and width; at most the padded input size.
    padding : int or pair, default 0
        Zeros added on each side; a pair is (left/right, top/bottom), as in torchvision.
    generator : numpy Generator or int, optional
        Source of the offsets (default: ``fastconv._config.default_rng()`` at call time).

    Notes
    -----
    Each image of a batch gets its own offset ``(top, left)``, drawn uniformly in
    ``[0, H + 2 * pad_h - h] x [0, W + 2 * pad_w - w]`` (tops for the batch first, then lefts).
    The crop is one gather from a strided window view of the padded batch.
    """

    def __init__(self, size, padding=0, generator=None):
        self.size = _pair(size, "size", "RandomCrop", 1)
        pad_w, pad_h = _pair(padding, "padding", "RandomCrop", 0)
        self.padding = (pad_h, pad_w)
        self.generator = _make_generator(generator, "RandomCrop")

    def __call__(self, x):
        batch, single = _as_batch(x, "RandomCrop")
        b, c, h, w = batch.shape
        (ph, pw), (oh, ow) = self.padding, self.size
        hp, wp = h + 2 * ph, w + 2 * pw
        if oh > hp or ow > wp:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the padded "
                             f"input ({hp}, {wp})")
        if ph or pw:
            padded = np.zeros((b, c, hp, wp), dtype=batch.dtype)
            padded[:, :, ph:ph + h, pw:pw + w] = batch
        else:
            padded = batch
        rng = self._rng()
        top = rng.integers(0, hp - oh + 1, size=b)
        left = rng.integers(0, wp - ow + 1, size=b)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (oh, ow), axis=(2, 3))
        # Advanced indices split by a slice: the batch axis comes first -> (B, C, oh, ow).
        out = windows[np.arange(b), :, top, left]
        return out[0] if single else out

    def __repr__(self):
        ph, pw = self.padding
        return f"RandomCrop(size={self.size}, padding=({pw}, {ph}))"


class RandomHorizontalFlip(_Random):
    """Mirror each image left-right with probability ``p`` (one draw per image).

    Parameters
    ----------
    p : float in [0, 1], default 0.5
    generator : numpy Generator or int, optional
        Default: ``fastconv._config.default_rng()`` at call time.
    """

    def __init__(self, p=0.5, generator=None):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: expected p in [0, 1], got {p!r}")
        self.p = float(p)
        self.generator = _make_generator(generator, "RandomHorizontalFlip")

    def __call__(self, x):
        batch, single = _as_batch(x, "RandomHorizontalFlip")
        flip = self._rng().random(batch.shape[0]) < self.p
        out = batch.copy()
        out[flip] = batch[flip, :, :, ::-1]
        return out[0] if single else out

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"
