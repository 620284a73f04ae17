"""Fixtures for the training tests: short SyntheticShapes runs and the shared MNIST files."""
import os
from pathlib import Path

import pytest

import fastconv as fc

REPO = Path(__file__).resolve().parents[2]


def _mnist_root():
    for root in (os.environ.get("FASTCONV_DATA"), REPO.parent / "shared" / "data"):
        if root and (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
            return Path(root)
    return None


@pytest.fixture(autouse=True)
def _restore_threads():
    """`--threads` and set_num_threads are process-wide: leave them as found."""
    threads = fc.get_num_threads()
    yield
    fc.set_num_threads(threads)


@pytest.fixture
def mnist_dir():
    """Directory holding mnist/ (``$FASTCONV_DATA``, else ``<repo>/../shared/data``)."""
    root = _mnist_root()
    if root is None:
        pytest.skip("MNIST files not found in $FASTCONV_DATA/mnist or ../shared/data/mnist")
    return root


@pytest.fixture
def small_args():
    """Arguments of a short offline ``fastconv train`` run (lenet5 on SyntheticShapes).

    One thread: on a machine whose other cores are busy, OpenMP's spinning waits make two
    threads many times slower than one; the results do not depend on the count anyway."""
    def make(*extra):
        return ["train", "--limit-train", "256", "--limit-test", "256", "--batch-size", "32",
                "--threads", "1", "--quiet", *extra]
    return make
