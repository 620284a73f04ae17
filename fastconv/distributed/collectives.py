"""The process group and its collectives: MPI through mpi4py, with deadlines.

Every collective here is MPI's non-blocking form (``Iallreduce``, ``Ibcast``,
``Iallgather``, ``Ibarrier``) polled until a deadline: blocking MPI calls cannot time out,
and a rank that died or hangs would otherwise leave the others waiting forever. When the
deadline passes, :class:`DistributedTimeoutError` (a ``RuntimeError``) names the operation,
the rank and the timeout. MPI cannot take back a collective once started, so the group is
then broken: an uncaught error (or, if the program caught it, the exit) aborts the whole
MPI job (``MPI_Abort``) instead of hanging in ``MPI_Finalize``.

Under MPICH's ``mpiexec`` a rank that *exits* (crash, ``os._exit``) makes the launcher kill
the others at once; the deadline is what ends the job when a rank hangs, or raises and
stops calling collectives, or the launcher does not clean up.
"""
import atexit
import os
import pickle
import sys
import time

import numpy as np

from ..tensor import Tensor

__all__ = ["init_process_group", "is_available", "is_initialized", "get_rank",
           "get_world_size", "all_reduce", "broadcast", "broadcast_object", "all_gather",
           "barrier", "DistributedTimeoutError", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 300.0
"""Seconds a collective may wait for the other ranks (``FASTCONV_DIST_TIMEOUT`` overrides).
Generous because the ranks legitimately drift apart while rank 0 writes a checkpoint."""

MPI_MISSING = ("fastconv.distributed needs mpi4py and an MPI library: pip install "
               "'fastconv[mpi]' (from a source checkout: pip install '.[mpi]'), which "
               "installs mpi4py and MPICH (its mpiexec starts the ranks)")

_OPS = ("sum", "mean", "max", "min")


class DistributedTimeoutError(RuntimeError):
    """A collective did not complete within the process group's timeout."""


class _Group:
    """The communicator and what this rank knows about the job."""

    def __init__(self, MPI, comm, timeout):
        self.MPI, self.comm, self.timeout = MPI, comm, timeout
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.broken = False
        self.local_threads = 1


_group = None


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"{MPI_MISSING} (importing mpi4py failed: {exc})") from exc
    return MPI


def _timeout_from_env():
    text = os.environ.get("FASTCONV_DIST_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"FASTCONV_DIST_TIMEOUT: expected a number of seconds > 0, got "
                         f"{text!r}")
    return value


def is_available():
    """Whether mpi4py (and so an MPI library) can be imported."""
    try:
        _import_mpi()
    except ImportError:
        return False
    return True


def is_initialized():
    """Whether :func:`init_process_group` has run in this process."""
    return _group is not None


def init_process_group(backend="mpi", timeout=None, abort_on_exception=True):
    """Join the MPI job this process was started in (``mpiexec -n K python ...``).

    Rank and world size come from the MPI environment (``MPI_COMM_WORLD``); a process
    started without ``mpiexec`` is a job of one. Calling it again changes nothing but the
    timeout (when given).

    Parameters
    ----------
    backend : "mpi"
        The only backend (PyTorch's first argument, kept for porting).
    timeout : float, optional
        Seconds a collective may wait before :class:`DistributedTimeoutError`; default
        ``$FASTCONV_DIST_TIMEOUT``, else :data:`DEFAULT_TIMEOUT` (300).
    abort_on_exception : bool, default True
        With more than one rank, an exception that ends this process (after its traceback
        is printed) aborts the whole job, instead of leaving the other ranks waiting for
        this one until their timeout.

    Raises
    ------
    ImportError
        mpi4py is not installed (the message says what to install).
    """
    global _group
    if backend != "mpi":
        raise ValueError(f"init_process_group: expected backend 'mpi', got {backend!r}")
    if timeout is not None:
        timeout = float(timeout)
        if not timeout > 0:
            raise ValueError(f"init_process_group: expected timeout > 0 seconds, got "
                             f"{timeout}")
    if _group is not None:
        if timeout is not None:
            _group.timeout = timeout
        return
    timeout = _timeout_from_env() if timeout is None else timeout
    MPI = _import_mpi()
    # A private communicator: the user's own MPI traffic on COMM_WORLD cannot match ours.
    group = _Group(MPI, MPI.COMM_WORLD.Dup(), timeout)
    group.local_threads = _threads_per_rank(MPI, group.comm)
    _group = group
    atexit.register(_abort_if_broken)
    if abort_on_exception and group.size > 1:
        _install_excepthook()


def _threads_per_rank(MPI, comm):
    """Cores of this process divided by the ranks on this machine that share them (ranks
    bound to disjoint cores by the launcher keep all of theirs)."""
    try:
        mine = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        mine = set(range(os.cpu_count() or 1))
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        masks = local.allgather(sorted(mine))
    finally:
        local.Free()
    sharing = sum(1 for mask in masks if mine & set(mask))
    return max(1, len(mine) // max(1, sharing))


def _install_excepthook():
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        # The launcher forwards this rank's stderr asynchronously, and the abort kills the
        # forwarding too: without a pause the traceback can arrive cut short (seen in CI).
        _flush_std_streams()
        time.sleep(_ABORT_GRACE_SECONDS)
        _abort(1)

    sys.excepthook = hook


_ABORT_GRACE_SECONDS = 0.5


def _flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not stop the abort
            pass


def _abort(code):
    _flush_std_streams()
    _group.MPI.COMM_WORLD.Abort(code)


def _abort_if_broken():
    if _group is not None and _group.broken:
        _abort(1)


def abort(code=1):
    """End every rank of the job now (``MPI_Abort``) with exit code ``code``."""
    _need_group("abort")
    _abort(int(code))


def default_threads():
    """Kernel threads per rank that do not oversubscribe the machine: ``OMP_NUM_THREADS``
    when set, else this process's cores divided by the ranks on this machine sharing them
    (at least 1)."""
    group = _need_group("default_threads")
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return group.local_threads


def _need_group(what):
    if _group is None:
        raise RuntimeError(f"fastconv.distributed.{what}: the process group is not "
                           "initialised; call fastconv.distributed.init_process_group() "
                           "first")
    return _group


def get_rank():
    """This process's rank, 0 .. world size - 1 (rank 0 is the main process)."""
    return _need_group("get_rank").rank


def get_world_size():
    """The number of processes in the job."""
    return _need_group("get_world_size").size


# ---------------------------------------------------------------------- waiting
def wait(requests, what, group=None):
    """Complete MPI ``requests`` (a list), or raise :class:`DistributedTimeoutError` once
    the group's timeout has passed.

    MPI moves a message only inside MPI calls, and a large one needs several exchanges
    between the ranks: a rank that sleeps between polls delays every exchange by its sleep
    (with 5 ms sleeps, a 1 MB all-reduce took 20-50 ms instead of 0.5 ms). So the first
    second is spent polling, yielding the core between polls (to a rank that shares it);
    only longer waits (a rank writing a checkpoint) sleep between polls, up to 1 ms."""
    group = _group if group is None else group
    MPI = group.MPI
    if MPI.Request.Testall(requests):
        return
    start = time.monotonic()
    deadline = start + group.timeout
    spin_until = start + _SPIN_SECONDS
    delay = 1e-4
    while not MPI.Request.Testall(requests):
        now = time.monotonic()
        if now > deadline:
            group.broken = True
            raise DistributedTimeoutError(
                f"fastconv.distributed: {what} did not complete within {group.timeout:g} s "
                f"on rank {group.rank} of {group.size}: another rank has probably died, hung "
                "or stopped calling the same collectives. Set FASTCONV_DIST_TIMEOUT "
                "(seconds) to wait longer.")
        if now < spin_until:
            _yield()
        else:
            time.sleep(delay)
            delay = min(2 * delay, 0.001)


_yield = getattr(os, "sched_yield", lambda: None)
_SPIN_SECONDS = 1.0


def _check_op(op, dtype):
    if op not in _OPS:
        raise ValueError(f"all_reduce: expected op one of {_OPS}, got {op!r}")
    if op == "mean" and dtype.kind != "f":
        raise TypeError(f"all_reduce: op='mean' needs a floating array, got dtype {dtype}")


def _in_place_target(array, name):
    """(the ndarray to work on, whether it is the caller's own storage)."""
    if isinstance(array, Tensor):
        array = array.data
    if isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable:
        return array, True
    out = np.array(array, order="C", copy=True)
    if out.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got dtype {out.dtype}")
    return out, False


def iall_reduce(buffer, op="sum", group=None):
    """Start an in-place sum/max/min over ranks of the C-contiguous ``buffer``; returns the
    MPI request (complete it with :func:`wait`)."""
    group = _group if group is None else group
    MPI = group.MPI
    mpi_op = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]
    return group.comm.Iallreduce(MPI.IN_PLACE, buffer, op=mpi_op)


def all_reduce(array, op="sum"):
    """Element-wise reduction of ``array`` over all ranks; every rank gets the result.

    Parameters
    ----------
    array : ndarray, Tensor or array_like
        Reduced in place when it is a writable C-contiguous ndarray (or a Tensor, whose
        ``.data`` is reduced); otherwise a reduced copy is returned.
    op : {"sum", "mean", "max", "min"}
        ``"mean"`` is the sum divided by the world size (floating arrays only).

    Returns
    -------
    ndarray: the reduced array (``array`` itself when reduced in place).

    Examples
    --------
    >>> counts = np.array([correct, seen], dtype=np.int64)              # doctest: +SKIP
    >>> all_reduce(counts)            # every rank now holds the global totals
    """
    group = _need_group("all_reduce")
    buffer, _ = _in_place_target(array, "all_reduce")
    _check_op(op, buffer.dtype)
    if group.size > 1 and buffer.size:
        wait([iall_reduce(buffer, op, group)], f"all_reduce(op={op!r}) of {buffer.nbytes} "
                                               "bytes", group)
    if op == "mean":
        np.divide(buffer, group.size, out=buffer)
    return buffer


def _byte_view(array):
    return array.reshape(-1).view(np.uint8)


def broadcast(array, src=0):
    """Copy rank ``src``'s ``array`` into every rank's ``array`` (in place; same shape and
    dtype on every rank). Any dtype: the bytes are sent as they are. Returns the array."""
    group = _need_group("broadcast")
    buffer, own = _in_place_target(array, "broadcast")
    if not own:
        raise ValueError("broadcast: expected a writable C-contiguous ndarray or a Tensor "
                         "(it is overwritten in place)")
    _check_src(src, group)
    if group.size > 1 and buffer.size:
        wait([group.comm.Ibcast(_byte_view(buffer), root=src)],
             f"broadcast of {buffer.nbytes} bytes from rank {src}", group)
    return buffer


def broadcast_arrays(arrays, src=0, what="broadcast"):
    """Broadcast several arrays (any dtypes) from ``src`` as one message, in place."""
    group = _need_group(what)
    arrays = [a for a in arrays if a.size]
    if group.size == 1 or not arrays:
        return
    for a in arrays:
        if not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"{what}: arrays must be writable and C-contiguous")
    message = np.concatenate([_byte_view(a) for a in arrays])
    wait([group.comm.Ibcast(message, root=src)],
         f"{what} of {message.nbytes} bytes from rank {src}", group)
    if group.rank != src:
        offset = 0
        for a in arrays:
            _byte_view(a)[...] = message[offset:offset + a.nbytes]
            offset += a.nbytes


def broadcast_object(obj, src=0):
    """Rank ``src``'s picklable ``obj`` on every rank (others pass anything, e.g. None)."""
    group = _need_group("broadcast_object")
    _check_src(src, group)
    if group.size == 1:
        return obj
    payload = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL),
                            np.uint8) if group.rank == src else None
    size = np.array([0 if payload is None else payload.size], np.int64)
    broadcast(size, src)
    if payload is None:
        payload = np.empty(int(size[0]), np.uint8)
    else:
        payload = payload.copy()
    broadcast(payload, src)
    return obj if group.rank == src else pickle.loads(payload.tobytes())


def all_gather(array):
    """Every rank's ``array`` (same shape and dtype everywhere), stacked in rank order:
    an ndarray of shape ``(world_size, *array.shape)``, identical on every rank."""
    group = _need_group("all_gather")
    send = np.ascontiguousarray(array.data if isinstance(array, Tensor) else array)
    out = np.empty((group.size,) + send.shape, send.dtype)
    if group.size == 1:
        out[0] = send
        return out
    wait([group.comm.Iallgather(_byte_view(send), _byte_view(out))],
         f"all_gather of {send.nbytes} bytes per rank", group)
    return out


def barrier():
    """Wait until every rank has called ``barrier()`` (with the group's timeout)."""
    group = _need_group("barrier")
    if group.size > 1:
        wait([group.comm.Ibarrier()], "barrier", group)


def _check_src(src, group):
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or \
            not 0 <= src < group.size:
        raise ValueError(f"expected src a rank in [0, {group.size}), got {src!r}")
