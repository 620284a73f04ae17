"""``SyntheticShapes``: a procedurally generated 10-class image task, no files, offline.

Each image is one simple shape (circle, T, triangle, cross, ...) at a random position,
scale, stroke thickness and small rotation, with a random background level, contrast and
Gaussian noise. Every shape is drawn from a signed distance ``d`` (pixels, negative inside)
evaluated on a coordinate grid for all images of that class at once, and shaded with a
one-pixel anti-aliased edge ``clip(0.5 - d, 0, 1)``: 10,000 28 x 28 images take a fraction
of a second. A LeNet-sized CNN learns it to over 90% in a couple of epochs (LeNet-5, Adam 1e-3,
batch 64, 10,000 images: about 80% after one epoch, 94% after two); the noise, rotation and
sizes keep it from being trivial (diagonal vs two dots, triangle vs cross). A filled square
is deliberately not a class: told apart from a disc only by its corners, it was the one
shape such a network had not learnt after two epochs.
"""
import numbers

import numpy as np

from .datasets import _ImageDataset

__all__ = ["SyntheticShapes"]

SHAPES = ["circle", "T-shape", "triangle", "cross", "horizontal bar", "vertical bar", "ring",
          "diagonal", "two dots", "L-shape"]

_CHUNK = 4096  # images rendered per pass: bounds the float32 temporaries (~13 MB at 28 x 28)


def _shape_distance(label, u, v, r, t, aux):
    """Signed distance (pixels) to shape ``label`` in rotated coordinates ``u, v`` (m, H, W),
    for half-size ``r``, half-thickness ``t`` and a +-1 variant ``aux``, each (m, 1, 1)."""
    au, av = np.abs(u), np.abs(v)
    if label == 0:                                   # filled circle
        return np.hypot(u, v) - r
    if label == 1:                                   # T: a bar along the top, a stem down
        return np.minimum(np.maximum(au - r, np.abs(v + r - t) - t), np.maximum(au - t, av - r))
    if label == 2:                                   # filled triangle, apex up
        edge = (1.7 * au - 0.95 * (v + r)) / np.float32(1.946)
        return np.maximum(v - 0.7 * r, edge)
    if label == 3:                                   # plus-shaped cross
        return np.minimum(np.maximum(au - t, av - r), np.maximum(av - t, au - r))
    if label == 4:                                   # horizontal bar
        return np.maximum(au - r, av - t)
    if label == 5:                                   # vertical bar
        return np.maximum(av - r, au - t)
    if label == 6:                                   # ring
        return np.abs(np.hypot(u, v) - 0.8 * r) - t
    if label == 7:                                   # diagonal stroke, either direction
        a = (u + aux * v) * np.float32(np.sqrt(0.5))
        b = (v - aux * u) * np.float32(np.sqrt(0.5))
        return np.maximum(np.abs(a) - r, np.abs(b) - t)
    if label == 8:                                   # two dots, side by side or stacked
        along = np.where(aux > 0, u, v)
        across = np.where(aux > 0, v, u)
        dot = np.hypot(np.abs(along) - 0.55 * r, across)
        return dot - 0.25 * r
    # L-shape: a stroke down the left side and one along the bottom
    return np.minimum(np.maximum(np.abs(u + r - t) - t, av - r),
                      np.maximum(np.abs(v - r + t) - t, au - r))


class SyntheticShapes(_ImageDataset):
    """``n`` generated grayscale images of simple shapes, one class per shape.

    Parameters
    ----------
    n : int
        Number of images. Classes are balanced: each appears ``n // num_classes`` or one
        more times, in random order.
    size : int, default 28
        Height and width (at least 12).
    seed : int, default 0
        Everything is a deterministic function of ``(n, size, seed, num_classes)``; use
        different seeds for training and test sets.
    num_classes : int, default 10
        The first ``num_classes`` of: circle, T-shape, triangle, cross, horizontal bar,
        vertical bar, ring, diagonal, two dots, L-shape.
    transform : callable, optional
        As for :class:`fastconv.data.MNIST`.

    Attributes
    ----------
    data : ndarray, uint8 (n, size, size)
        Stored quantised, as MNIST is; items and batches are float32 in [0, 1], (1, H, W).
    targets : ndarray, int64 (n,)
    classes : list of str

    Examples
    --------
    >>> train, test = SyntheticShapes(10000, seed=0), SyntheticShapes(2000, seed=1)
    >>> x, y = train.get_batch(range(64))   # float32 (64, 1, 28, 28), int64 (64,)
    """

    def __init__(self, n, size=28, seed=0, num_classes=10, transform=None):
        for name, value, low in (("n", n, 0), ("size", size, 12), ("num_classes", num_classes, 2),
                                 ("seed", seed, 0)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"SyntheticShapes: expected {name} an int, got {value!r}")
            if value < low:
                raise ValueError(f"SyntheticShapes: expected {name} >= {low}, got {value}")
        if num_classes > len(SHAPES):
            raise ValueError(f"SyntheticShapes: expected num_classes <= {len(SHAPES)}, got "
                             f"{num_classes}")
        self.n, self.size, self.seed = int(n), int(size), int(seed)
        self.classes = SHAPES[:num_classes]
        self.transform = transform
        self.data, self.targets = self._generate()

    def _generate(self):
        n, size, k = self.n, self.size, len(self.classes)
        params_rng, noise_rng = (np.random.default_rng(s)
                                 for s in np.random.SeedSequence([self.seed, size, k]).spawn(2))
        targets = params_rng.permutation(np.arange(n, dtype=np.int64) % k)
        s = size / 28.0
        f32 = np.float32
        r = params_rng.uniform(6.5 * s, 10.0 * s, n).astype(f32)           # half-size
        t = params_rng.uniform(1.0 * s, 1.8 * s, n).astype(f32)           # half-thickness
        margin = r + 1.0
        cx = params_rng.uniform(margin, size - 1 - margin).astype(f32)
        cy = params_rng.uniform(margin, size - 1 - margin).astype(f32)
        angle = params_rng.uniform(-np.pi / 12, np.pi / 12, n)            # +-15 degrees
        cos, sin = np.cos(angle).astype(f32), np.sin(angle).astype(f32)
        aux = np.where(params_rng.random(n) < 0.5, f32(-1), f32(1))
        background = params_rng.uniform(0.0, 0.15, n).astype(f32)
        foreground = params_rng.uniform(0.7, 1.0, n).astype(f32)
        sigma = params_rng.uniform(0.02, 0.10, n).astype(f32)

        grid = np.arange(size, dtype=f32)
        data = np.empty((n, size, size), dtype=np.uint8)
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            img = noise_rng.standard_normal((stop - start, size, size), dtype=f32)
            img *= sigma[start:stop, None, None]
            labels = targets[start:stop]
            for label in range(k):
                idx = np.flatnonzero(labels == label)
                if not idx.size:
                    continue
                j = idx + start
                col = lambda a: a[j][:, None, None]  # noqa: E731  (per-image parameter)
                dx = grid[None, None, :] - col(cx)
                dy = grid[None, :, None] - col(cy)
                u = dx * col(cos) + dy * col(sin)
                v = dy * col(cos) - dx * col(sin)
                d = _shape_distance(label, u, v, col(r), col(t), col(aux))
                coverage = np.clip(0.5 - d, 0.0, 1.0)
                bg = col(background)
                img[idx] += bg + (col(foreground) - bg) * coverage
            np.clip(img, 0.0, 1.0, out=img)
            data[start:stop] = np.rint(img * 255)
        return data, targets

    def _repr_lines(self):
        return [f"Size: {self.size} x {self.size}", f"Seed: {self.seed}",
                f"Classes: {len(self.classes)}"]
