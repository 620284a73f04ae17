"""The training loop: :class:`Trainer`, :func:`fit` and :func:`evaluate`.

One epoch is: ``train_loader.set_epoch(e)``, a pass over the training batches (forward, loss,
``backward()``, gradient averaging across processes, ``optimizer.step()``, and the scheduler
when it steps per batch), then evaluation of the validation and test sets under
``no_grad()`` and ``model.eval()``, the per-epoch scheduler step, the early-stopping
bookkeeping, the checkpoint and the log. Everything a later epoch depends on (weights,
optimiser and scheduler state, ``fastconv._config.default_rng()``, the loader's seed and the
epoch number) is in :meth:`Trainer.state_dict`, so a run resumed from a checkpoint continues
bit-identically to one that was never interrupted (same seed and thread count).

>>> trainer = fit(model, SGD(model.parameters(), lr=0.05, momentum=0.9), train_loader,
...               epochs=3, test_loader=test_loader)              # doctest: +SKIP
>>> trainer.history[-1]["test_accuracy"]                            # doctest: +SKIP
"""
import math
import time

import numpy as np

from .. import _config
from ..autograd import no_grad
from .checkpoint import load_checkpoint, save_checkpoint
from .context import LocalContext
from .progress import Reporter
from .runlog import write_log

__all__ = ["Trainer", "fit", "evaluate", "default_loss"]


def default_loss(logits, target):
    """``cross_entropy(logits, target)``, the classification loss."""
    try:
        from ..functional import cross_entropy
    except ImportError:  # while fastconv.functional does not re-export it yet
        from ..functional.loss import cross_entropy
    return cross_entropy(logits, target)


def _batch_sums(logits, target, loss):
    """(loss x images, correct predictions, images) of one batch, as Python numbers."""
    y = np.asarray(target.data)
    n = len(y)
    correct = int(np.count_nonzero(np.asarray(logits.data).argmax(axis=1) == y))
    return float(loss.data) * n, correct, n


def evaluate(model, loader, loss_fn=None, context=None):
    """Mean loss and accuracy of ``model`` over ``loader``, under ``no_grad()`` and
    ``model.eval()`` (the model's previous mode is restored afterwards).

    Returns
    -------
    dict with ``loss``, ``accuracy`` and ``images`` (summed over processes).
    """
    loss_fn = default_loss if loss_fn is None else loss_fn
    context = LocalContext() if context is None else context
    was_training = model.training
    model.eval()
    sums = np.zeros(3)
    try:
        with no_grad():
            for x, y in loader:
                out = model(x)
                sums += _batch_sums(out, y, loss_fn(out, y))
    finally:
        model.train(was_training)
    total_loss, correct, n = context.reduce_sums(sums)
    if n == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "images": 0}
    return {"loss": float(total_loss / n), "accuracy": float(correct / n), "images": int(n)}


class Trainer:
    """Trains a classifier epoch by epoch, with evaluation, early stopping and checkpoints.

    Parameters
    ----------
    model : fastconv.nn.Module
    optimizer : fastconv.optim.Optimizer
    train_loader : DataLoader
        Iterated once per epoch after ``set_epoch(epoch)`` (when it has that method), so its
        order depends only on its seed and the epoch.
    scheduler : LRScheduler, optional
    scheduler_interval : {"epoch", "batch"}, default "epoch"
        When ``scheduler.step()`` is called (``OneCycleLR`` steps per batch).
    val_loader, test_loader : DataLoader, optional
        Evaluated at the end of every epoch.
    loss_fn : callable, default cross-entropy
    patience : int, optional
        Early stopping: stop once the validation loss has not improved for ``patience``
        epochs, and restore the weights of the best epoch (needs ``val_loader``).
    checkpoint : path, optional
        Written atomically at the end of every epoch (see :mod:`.checkpoint`).
    log : path, optional
        JSON log, rewritten atomically at the end of every epoch and of the run.
    run_info : dict, optional
        JSON-able description of the run (arguments, dataset, model), stored in the
        checkpoint and the log.
    reporter : Reporter, optional
        Progress output; default: a ``Reporter()`` on stdout (silent off the main process).
    context : LocalContext or compatible, optional
        The process layout (see :mod:`.context`); default: a single process.
    callbacks : sequence of callables ``f(trainer, record)``
        Called at the end of every epoch, after the checkpoint is written.
    """

    def __init__(self, model, optimizer, train_loader, *, scheduler=None,
                 scheduler_interval="epoch", val_loader=None, test_loader=None, loss_fn=None,
                 patience=None, checkpoint=None, log=None, run_info=None, reporter=None,
                 context=None, callbacks=()):
        if scheduler_interval not in ("epoch", "batch"):
            raise ValueError(f"Trainer: expected scheduler_interval 'epoch' or 'batch', got "
                             f"{scheduler_interval!r}")
        if patience is not None:
            if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
                raise ValueError(f"Trainer: expected patience None or an int >= 1, got "
                                 f"{patience!r}")
            if val_loader is None:
                raise ValueError("Trainer: early stopping (patience) needs a val_loader")
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.val_loader = val_loader
        self.test_loader = test_loader
        self.loss_fn = default_loss if loss_fn is None else loss_fn
        self.patience = patience
        self.checkpoint = checkpoint
        self.log = log
        self.run_info = dict(run_info or {})
        self.context = LocalContext() if context is None else context
        self.reporter = (Reporter(is_main_process=self.context.is_main_process)
                         if reporter is None else reporter)
        self.callbacks = list(callbacks)
        self.epoch = 0                 # epochs completed
        self.history = []              # one dict per completed epoch
        self.best = {"val_loss": math.inf, "epoch": None, "bad_epochs": 0}
        self.best_model = None         # state_dict of the best epoch (with validation)
        self.stopped_early = False
        self.final = None              # test metrics of the weights the run ends with
        self._params = [p for p in model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """Everything needed to continue this run exactly (see :meth:`load_state_dict`)."""
        rng = _config.default_rng()
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": {"bit_generator": type(rng.bit_generator).__name__,
                    "state": rng.bit_generator.state},
            "train_loader": {"seed": getattr(self.train_loader, "seed", None)},
            "best": dict(self.best),
            "best_model": self.best_model,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "run": self.run_info,
        }

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict`: the next :meth:`fit` continues after its epoch."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if (state["scheduler"] is None) != (self.scheduler is None):
                raise ValueError("the checkpoint has " + ("no" if state["scheduler"] is None
                                                          else "a") + " scheduler state, "
                                 "this run " + ("has" if self.scheduler is not None
                                                else "has none"))
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            rng = _config.default_rng()
            if state["rng"]["bit_generator"] != type(rng.bit_generator).__name__:
                raise ValueError(f"the checkpoint's random generator is "
                                 f"{state['rng']['bit_generator']}, this process uses "
                                 f"{type(rng.bit_generator).__name__}")
            seed = state["train_loader"]["seed"]
            epoch, best = int(state["epoch"]), dict(state["best"])
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"checkpoint does not match this run: {type(exc).__name__}: "
                             f"{exc}") from exc
        rng.bit_generator.state = state["rng"]["state"]
        if seed is not None and hasattr(self.train_loader, "seed"):
            self.train_loader.seed = seed
        self.epoch = epoch
        self.best = best
        self.best_model = state["best_model"]
        self.stopped_early = bool(state["stopped_early"])
        self.history = list(state["history"])

    def save(self, path):
        """Write :meth:`state_dict` to ``path`` atomically (main process only)."""
        if self.context.is_main_process:
            save_checkpoint(path, self.state_dict())

    def resume(self, path):
        """Load the checkpoint at ``path`` (``ValueError`` naming it when it is truncated,
        foreign or does not match this model and optimiser)."""
        state = load_checkpoint(path)
        try:
            self.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"cannot resume from {str(path)!r}: {exc}") from exc

    # ------------------------------------------------------------------ loop
    def _lr(self):
        return float(self.optimizer.param_groups[0]["lr"])

    def train_epoch(self, epoch, epochs):
        """One pass over the training set; returns (mean loss, accuracy, images, seconds)."""
        model, optimizer, scheduler = self.model, self.optimizer, self.scheduler
        model.train()
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        total = getattr(self.train_loader, "num_samples", None)  # a rank's shard
        if total is None:
            total = len(getattr(self.train_loader, "dataset", ()))
        bar = self.reporter.epoch_bar(epoch + 1, epochs, total)
        sums = np.zeros(3)
        start = time.perf_counter()
        try:
            for step, (x, y) in enumerate(self.train_loader):
                out = model(x)
                loss = self.loss_fn(out, y)
                value = float(loss.data)
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"training diverged: loss is {value} at epoch {epoch + 1}, batch "
                        f"{step + 1} (learning rate {self._lr():g}); try a lower learning "
                        "rate")
                optimizer.zero_grad()
                loss.backward()
                self.context.average_gradients(self._params)
                optimizer.step()
                if scheduler is not None and self.scheduler_interval == "batch":
                    scheduler.step()
                batch = _batch_sums(out, y, loss)
                sums += batch
                bar.update(batch[2], sums[0] / sums[2], sums[1] / sums[2])
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        total_loss, correct, n = self.context.reduce_sums(sums)
        return float(total_loss / n), float(correct / n), int(n), seconds

    def _run_epoch(self, epoch, epochs):
        start = time.perf_counter()
        lr = self._lr()
        loss, acc, n, seconds = self.train_epoch(epoch, epochs)
        self.context.broadcast_buffers(self.model)  # evaluate and save one model everywhere
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss, "train_accuracy": acc,
                  "train_images": n, "train_time_s": seconds,
                  "images_per_s": n / seconds if seconds > 0 else float("nan")}
        for name, loader in (("val", self.val_loader), ("test", self.test_loader)):
            if loader is not None:
                metrics = evaluate(self.model, loader, self.loss_fn, self.context)
                record[f"{name}_loss"] = metrics["loss"]
                record[f"{name}_accuracy"] = metrics["accuracy"]
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()
        if self.val_loader is not None:
            improved = record["val_loss"] < self.best["val_loss"]
            record["improved"] = improved
            if improved:
                self.best = {"val_loss": record["val_loss"], "epoch": epoch + 1,
                             "bad_epochs": 0}
                self.best_model = self.model.state_dict()
            else:
                self.best["bad_epochs"] += 1
            if self.patience is not None and self.best["bad_epochs"] >= self.patience:
                self.stopped_early = True
        record["epoch_time_s"] = time.perf_counter() - start
        return record

    def fit(self, epochs):
        """Train until ``epochs`` epochs are complete (counting those already done when
        resumed) or early stopping triggers; returns ``self.history``."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"fit: expected epochs an int >= 0, got {epochs!r}")
        status = "finished"
        try:
            while self.epoch < epochs and not self.stopped_early:
                record = self._run_epoch(self.epoch, epochs)
                self.epoch += 1
                self.history.append(record)
                if self.checkpoint is not None:
                    self.save(self.checkpoint)
                self.reporter.epoch_end(record, epochs)
                self._write_log("running")
                for callback in self.callbacks:
                    callback(self, record)
            self._finish(epochs)
        except BaseException:
            status = "interrupted"
            raise
        finally:
            self._write_log(status)
        return self.history

    def _finish(self, epochs):
        """Early stopping restores the best weights; record the final test metrics."""
        last = self.history[-1] if self.history else {}
        self.final = {"weights": "last", "epoch": last.get("epoch"),
                      "test_loss": last.get("test_loss"),
                      "test_accuracy": last.get("test_accuracy")}
        if self.stopped_early:
            self.reporter.message(
                f"early stopping: validation loss has not improved for {self.patience} "
                f"epochs (best {self.best['val_loss']:.4f} at epoch {self.best['epoch']})")
        if self.patience is not None and self.best_model is not None:
            self.model.load_state_dict(self.best_model)
            self.final = {"weights": "best", "epoch": self.best["epoch"]}
            best = next((r for r in self.history if r["epoch"] == self.best["epoch"]), {})
            if self.test_loader is not None:
                if best.get("test_loss") is not None:
                    self.final.update(test_loss=best["test_loss"],
                                      test_accuracy=best["test_accuracy"])
                else:  # the best epoch is not in this history (should not happen)
                    metrics = evaluate(self.model, self.test_loader, self.loss_fn,
                                       self.context)
                    self.final.update(test_loss=metrics["loss"],
                                      test_accuracy=metrics["accuracy"])
            self.reporter.message(f"restored the weights of epoch {self.best['epoch']} "
                                  f"(best validation loss {self.best['val_loss']:.4f})")

    # ------------------------------------------------------------------ results
    def totals(self):
        """Summary of the run so far (JSON-able)."""
        train_time = sum(r["train_time_s"] for r in self.history)
        images = sum(r["train_images"] for r in self.history)
        best_val = self.best["val_loss"]
        return {
            "epochs_run": len(self.history),
            "train_images": images,
            "train_time_s": train_time,
            "wall_time_s": sum(r["epoch_time_s"] for r in self.history),
            "images_per_s": images / train_time if train_time > 0 else None,
            "best_epoch": self.best["epoch"],
            "best_val_loss": best_val if math.isfinite(best_val) else None,
            "stopped_early": self.stopped_early,
            "final": self.final,
        }

    def _write_log(self, status):
        if self.log is not None and self.context.is_main_process:
            write_log(self.log, run=self.run_info, history=self.history,
                      totals=self.totals(), status=status)


def fit(model, optimizer, train_loader, epochs, **kwargs):
    """Build a :class:`Trainer` with ``kwargs`` and train for ``epochs``; returns it
    (``trainer.history`` holds the per-epoch metrics).

    ``resume=path`` continues from a checkpoint first.
    """
    resume = kwargs.pop("resume", None)
    trainer = Trainer(model, optimizer, train_loader, **kwargs)
    if resume is not None:
        trainer.resume(resume)
    trainer.fit(epochs)
    return trainer
