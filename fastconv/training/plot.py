"""PNG of a run's loss and accuracy curves (``fastconv train --plot PATH``; needs matplotlib,
the ``plot`` extra: ``pip install fastconv[plot]``)."""

__all__ = ["plot_history", "matplotlib_missing"]

_MISSING = ("plotting needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'fastconv[plot]')")


def matplotlib_missing():
    """None when matplotlib can be imported, else the message saying what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return _MISSING
    return None


def plot_history(history, path, title=None):
    """Save the curves of ``history`` (a ``Trainer.history``) to ``path`` as PNG.

    Two panels, loss and accuracy against the epoch, for train and, when present,
    validation and test. Raises ``ImportError`` (saying what to install) without matplotlib.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed; must precede pyplot's import
        from matplotlib import pyplot as plt
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for split, style in (("train", "o-"), ("val", "s--"), ("test", "^-.")):
        if history and history[0].get(f"{split}_loss") is not None:
            ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
            ax_acc.plot(epochs, [100 * r[f"{split}_accuracy"] for r in history], style,
                        label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
