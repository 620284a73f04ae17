"""``fastconv train``: turns parsed command-line arguments into a :class:`Trainer` run.

Exit codes: 0 done; 1 training diverged (non-finite loss); 2 bad arguments, a missing or
damaged dataset, or a checkpoint that cannot be resumed (the message says which and why,
no traceback); 130 interrupted (Ctrl-C; the last checkpoint stays valid).

``--distributed`` (under ``mpirun -n K``): every rank runs this same setup, then the ranks
agree that all of them succeeded before training (a setup failure on any rank is printed
once, by the lowest failing rank, and every rank exits with the code); a failure during
training aborts the whole job, since the other ranks may be waiting in a collective.
"""
import math
import sys
import time

from .. import _config
from ..data import DataLoader
from . import recipes
from .checkpoint import load_checkpoint
from .plot import matplotlib_missing, plot_history
from .progress import Reporter
from .trainer import Trainer

__all__ = ["run", "TRAIN_DEFAULTS", "RUN_SETTINGS"]

# Defaults of the options that define a run. The parser leaves them None so that, with
# --resume, an option given on the command line can be told from one left at its default.
TRAIN_DEFAULTS = {
    "model": "lenet5", "dataset": "synthetic", "epochs": 3, "batch_size": 64, "lr": None,
    "optimizer": "sgd", "momentum": 0.9, "weight_decay": None, "scheduler": "cosine",
    "seed": 0, "val_split": 0.0, "patience": None, "augment": None, "limit_train": None,
    "limit_test": None,
}
# Settings a resumed run takes from its checkpoint: changing them would not continue the
# same run. (--epochs may grow for the "none" and "step" schedules; --patience, --threads,
# the paths and --quiet may change.)
RUN_SETTINGS = ("model", "dataset", "batch_size", "lr", "optimizer", "momentum",
                "weight_decay", "scheduler", "seed", "val_split", "augment", "limit_train",
                "limit_test")


class UsageError(Exception):
    """A problem the user can fix: printed without a traceback, exit code 2."""


def _fail(message, code=2):
    print(f"fastconv train: {message}", file=sys.stderr, flush=True)
    return code


def _resolve(args, saved):
    """The run's settings: the checkpoint's (``saved``) when resuming, else the defaults,
    overridden by what was given on the command line."""
    given = {k: getattr(args, k) for k in TRAIN_DEFAULTS if getattr(args, k) is not None}
    if saved is None:
        settings = dict(TRAIN_DEFAULTS, **given)
        spec = recipes.DATASETS[settings["dataset"]]
        if settings["augment"] is None:
            settings["augment"] = spec.augments_by_default
        if settings["lr"] is None:
            settings["lr"] = recipes.DEFAULT_LR[settings["optimizer"]]
        return settings
    settings = dict(TRAIN_DEFAULTS, **saved)
    for key in RUN_SETTINGS:
        if key in given and given[key] != settings[key]:
            raise UsageError(
                f"--{key.replace('_', '-')} {given[key]} differs from the checkpoint's "
                f"{settings[key]}: a resumed run keeps the settings it was started with")
    if "epochs" in given and given["epochs"] != saved["epochs"]:
        if settings["scheduler"] in ("cosine", "onecycle"):
            raise UsageError(f"--epochs {given['epochs']} differs from the checkpoint's "
                             f"{saved['epochs']}, and the {settings['scheduler']} schedule "
                             "was laid out for that many epochs")
    settings.update({k: given[k] for k in ("epochs", "patience") if k in given})
    return settings


def _check(settings):
    for key, low in (("epochs", 0), ("batch_size", 1), ("patience", 1), ("limit_train", 1),
                     ("limit_test", 1), ("seed", 0)):
        value = settings[key]
        if value is not None and value < low:
            raise UsageError(f"--{key.replace('_', '-')} must be >= {low}, got {value}")
    if not 0 <= settings["val_split"] < 1:
        raise UsageError(f"--val-split must be in [0, 1), got {settings['val_split']}")
    if settings["lr"] <= 0 or not math.isfinite(settings["lr"]):
        raise UsageError(f"--lr must be > 0, got {settings['lr']}")
    if settings["patience"] is not None and not settings["val_split"]:
        raise UsageError("--patience (early stopping on the validation loss) needs a "
                         "validation set: add --val-split, e.g. --val-split 0.1")


def _header(settings, model_params, sizes, threads, resumed_epoch):
    opt = settings["optimizer"]
    optim_desc = f"{opt} lr {settings['lr']:g}"
    if opt == "sgd" and settings["momentum"]:
        optim_desc += f" momentum {settings['momentum']:g}"
    if settings["weight_decay"]:
        optim_desc += f" weight decay {settings['weight_decay']:g}"
    if settings["scheduler"] != "none":
        optim_desc += f", {settings['scheduler']} schedule"
    spec = recipes.DATASETS[settings["dataset"]]
    data_desc = f"{sizes['train']} train"
    if sizes["val"]:
        data_desc += f", {sizes['val']} validation"
    data_desc += (f", {sizes['test']} test images ({spec.channels}x{spec.size}x{spec.size}, "
                  f"{spec.num_classes} classes{', augmented' if settings['augment'] else ''})")
    lines = [f"{settings['model']} ({model_params:,} parameters) on {settings['dataset']}: "
             f"{data_desc}",
             f"{optim_desc}; batch {settings['batch_size']}, {settings['epochs']} epochs, "
             f"{threads} thread{'s' if threads != 1 else ''}, seed {settings['seed']}"]
    if resumed_epoch is not None:
        lines.append(f"resuming after epoch {resumed_epoch}")
    return "\n".join(lines)


def run(args):
    """Run ``fastconv train`` with the parsed ``args``; returns the exit code."""
    context = None
    try:
        if getattr(args, "distributed", False):
            context = _mpi_context()
        elif getattr(args, "sync_batchnorm", False):
            raise UsageError("--sync-batchnorm needs --distributed")
        return _run(args, context)
    except UsageError as exc:
        if context is None:
            return _fail(str(exc))
        return _agree(context, 2, str(exc))


def _mpi_context():
    from .context import MPIContext
    try:
        return MPIContext()
    except ImportError:
        raise UsageError("--distributed needs mpi4py and an MPI runtime: pip install "
                         "'fastconv[mpi]' (from a source checkout: pip install '.[mpi]'), "
                         "then start the ranks with mpirun -n K fastconv train ... "
                         "--distributed") from None
    except ValueError as exc:  # e.g. a bad FASTCONV_DIST_TIMEOUT
        raise UsageError(str(exc)) from None


def _agree(context, code, message=None):
    """Every rank reports its setup outcome; the lowest failing rank prints its message.
    Returns the largest code (0: every rank is ready to train)."""
    worst, first = context.any_failed(code)
    if first is not None and first == context.rank:
        _fail(message if first == 0 else f"(rank {first}) {message}", code)
    return worst


def _run(args, context=None):
    started = time.perf_counter()
    state = None
    if args.resume is not None:
        try:
            state = load_checkpoint(args.resume)
            saved = state["run"]["args"]
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"cannot resume: {exc}") from None
        except (KeyError, TypeError):
            raise UsageError(f"cannot resume: checkpoint {args.resume!r} does not record "
                             "the arguments of a fastconv train run") from None
    settings = _resolve(args, None if state is None else saved)
    _check(settings)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        _config.set_num_threads(args.threads)
    elif context is not None:  # ranks x threads must not oversubscribe the cores
        _config.set_num_threads(context.default_threads())
    threads = _config.get_num_threads()
    checkpoint = args.checkpoint if args.checkpoint is not None else args.resume
    plot = args.plot
    reporter = Reporter(quiet=args.quiet,
                        is_main_process=context is None or context.is_main_process)
    if plot is not None and matplotlib_missing():
        reporter.message(f"fastconv train: --plot skipped: {matplotlib_missing()}")
        plot = None

    _config.manual_seed(settings["seed"])
    data_dir = args.data_dir if args.data_dir is not None else recipes.default_data_dir()
    try:
        train, val, test = recipes.build_datasets(
            settings["dataset"], data_dir, augment=settings["augment"],
            val_split=settings["val_split"], limit_train=settings["limit_train"],
            limit_test=settings["limit_test"], split_seed=settings["seed"],
            download=args.download)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        raise UsageError(str(exc)) from None
    batch = settings["batch_size"]
    eval_batch = max(batch, 256)
    if context is None:
        train_loader = DataLoader(train, batch_size=batch, shuffle=True,
                                  seed=settings["seed"])
        shard = None
    else:  # this rank's shards: the training set reshuffled per epoch, evaluation split
        train_loader = context.train_loader(train, batch, settings["seed"])
        shard = context.shard
    val_loader = None if val is None else DataLoader(val if shard is None else shard(val),
                                                     batch_size=eval_batch)
    test_loader = DataLoader(test if shard is None else shard(test), batch_size=eval_batch)

    model = recipes.build_model(settings["model"], settings["dataset"])
    if context is not None and args.sync_batchnorm:
        from ..distributed import SyncBatchNorm
        model = SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = recipes.build_optimizer(settings["optimizer"], model.parameters(),
                                        lr=settings["lr"], momentum=settings["momentum"],
                                        weight_decay=settings["weight_decay"])
    scheduler, interval = recipes.build_scheduler(settings["scheduler"], optimizer,
                                                  settings["epochs"], len(train_loader))
    from .. import build_info
    sizes = {"train": len(train), "val": 0 if val is None else len(val), "test": len(test)}
    n_params = recipes.count_parameters(model)
    run_info = {"args": settings, "threads": threads, "data_dir": str(data_dir),
                "dataset_sizes": sizes, "model_parameters": n_params,
                "build_info": build_info()}
    if context is not None:
        run_info["distributed"] = {"world_size": context.world_size,
                                   "sync_batchnorm": bool(args.sync_batchnorm)}
    trainer = Trainer(model, optimizer, train_loader, scheduler=scheduler,
                      scheduler_interval=interval, val_loader=val_loader,
                      test_loader=test_loader, patience=settings["patience"],
                      checkpoint=checkpoint, log=args.log, run_info=run_info,
                      reporter=reporter, context=context)
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except ValueError as exc:
            raise UsageError(f"cannot resume from {args.resume!r}: {exc}") from None
        saved_threads = state["run"].get("threads")
        if saved_threads is not None and saved_threads != threads:
            reporter.message(f"note: the checkpoint was written with {saved_threads} "
                             f"threads, this run uses {threads}: results will match an "
                             "uninterrupted run to float32 rounding, not bit for bit")
    if context is not None:  # the first collectives: every rank has got this far
        code = _agree(context, 0)
        if code:
            return code
        context.prepare(model)  # rank 0's weights everywhere; gradients averaged
    reporter.message(_header(settings, n_params, sizes, threads,
                             None if state is None else trainer.epoch))
    if context is not None:
        k = context.world_size
        reporter.message(f"distributed: {k} rank{'s' if k != 1 else ''} x {threads} thread"
                         f"{'s' if threads != 1 else ''}, batch {batch} per rank "
                         f"({k * batch} in all), BatchNorm "
                         f"{'synchronised' if args.sync_batchnorm else 'per rank'}")
    if trainer.stopped_early:
        reporter.message(f"the checkpoint's run already stopped early at epoch "
                         f"{trainer.epoch}; nothing to do")
    try:
        trainer.fit(settings["epochs"])
    except FloatingPointError as exc:
        return _stop(context, str(exc), 1)
    except KeyboardInterrupt:
        where = (f"; resume with --resume {checkpoint}" if checkpoint and trainer.epoch
                 else "")
        return _stop(context, f"interrupted after {trainer.epoch} complete epochs{where}",
                     130)
    _summary(reporter, trainer, time.perf_counter() - started)
    if checkpoint is not None:
        reporter.message(f"checkpoint: {checkpoint}")
    if args.log is not None:
        reporter.message(f"log: {args.log}")
    if plot is not None and trainer.history and reporter.is_main_process:
        plot_history(trainer.history, plot, title=f"{settings['model']} on "
                                                  f"{settings['dataset']}")
        reporter.message(f"plot: {plot}")
    return 0


def _stop(context, message, code):
    """A failure during training: in a distributed run the other ranks may be waiting in a
    collective for this one, so the whole job is aborted."""
    _fail(message if context is None or context.rank == 0
          else f"(rank {context.rank}) {message}", code)
    if context is not None:
        context.abort(code)
    return code


def _summary(reporter, trainer, wall):
    totals = trainer.totals()
    final = totals["final"] or {}
    parts = [f"done: {totals['epochs_run']} epochs in {wall:.1f} s"]
    if totals["images_per_s"]:
        parts.append(f"{totals['images_per_s']:.0f} img/s training")
    if final.get("test_accuracy") is not None:
        which = ("best validation epoch " + str(final["epoch"]) if final["weights"] == "best"
                 else "last epoch")
        parts.append(f"test accuracy {100 * final['test_accuracy']:.2f}% "
                     f"({which})")
    reporter.message(", ".join(parts))
