"""What a training run shows: a tqdm bar per epoch and one summary line per epoch.

The bar (loss, accuracy and images/s, updated as batches finish) is drawn only when the
output stream is a terminal, ``quiet`` is off, tqdm is installed and this is the main
process; otherwise each epoch prints a single line. Only the main process prints at all
(``is_main_process``: the seam a distributed run uses).
"""
import sys
import time

__all__ = ["Reporter", "format_epoch"]


def _pct(value):
    return f"{100 * value:6.2f}%"


def format_epoch(record, epochs):
    """The one-line summary of an epoch's metrics ``record`` (a history entry)."""
    parts = [f"epoch {record['epoch']:>{len(str(epochs))}d}/{epochs}",
             f"train loss {record['train_loss']:.4f} acc {_pct(record['train_accuracy'])}"]
    if record.get("val_loss") is not None:
        parts.append(f"val loss {record['val_loss']:.4f} acc {_pct(record['val_accuracy'])}")
    if record.get("test_loss") is not None:
        parts.append(f"test loss {record['test_loss']:.4f} acc "
                     f"{_pct(record['test_accuracy'])}")
    parts.append(f"{record['images_per_s']:7.0f} img/s")
    parts.append(f"{record['epoch_time_s']:6.1f} s")
    line = "  ".join(parts)
    if record.get("improved"):
        line += "  *"
    return line


class _NoBar:
    def update(self, images, loss, accuracy):
        pass

    def close(self):
        pass


class _Bar:
    """tqdm counting images (its rate is the images/s), with loss and accuracy so far."""

    def __init__(self, tqdm, total_images, desc, stream):
        self._bar = tqdm(total=total_images, desc=desc, unit="img", unit_scale=True,
                         leave=False, file=stream, dynamic_ncols=True, mininterval=0.25)
        self._last = 0.0

    def update(self, images, loss, accuracy):
        self._bar.update(images)
        now = time.perf_counter()
        if now - self._last >= 0.25:  # postfix formatting is not free: a few times a second
            self._last = now
            self._bar.set_postfix_str(f"loss {loss:.4f} acc {100 * accuracy:.2f}%",
                                      refresh=False)

    def close(self):
        self._bar.close()


class Reporter:
    """Prints a run's progress; silent outside the main process.

    Parameters
    ----------
    quiet : bool, default False
        No progress bar (the per-epoch lines are still printed).
    stream : file, default sys.stdout
    is_main_process : bool, default True
        False: print nothing (the other ranks of a distributed run).
    """

    def __init__(self, quiet=False, stream=None, is_main_process=True):
        self.stream = sys.stdout if stream is None else stream
        self.is_main_process = bool(is_main_process)
        self.quiet = bool(quiet)
        self._tqdm = None
        if self.is_main_process and not self.quiet and _isatty(self.stream):
            try:
                from tqdm import tqdm
            except ImportError:  # a declared dependency, but the bar is a nicety
                tqdm = None
            self._tqdm = tqdm

    @property
    def shows_bar(self):
        return self._tqdm is not None

    def message(self, text):
        if self.is_main_process:
            print(text, file=self.stream, flush=True)

    def epoch_bar(self, epoch, epochs, total_images):
        """A bar for epoch ``epoch`` (1-based) of ``epochs``, counting images."""
        if self._tqdm is None:
            return _NoBar()
        return _Bar(self._tqdm, total_images, f"epoch {epoch}/{epochs}", self.stream)

    def epoch_end(self, record, epochs):
        self.message(format_epoch(record, epochs))


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
