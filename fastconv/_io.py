"""Durable file writes shared by weight files, checkpoints and run logs."""
import os
import tempfile


def atomic_write(path, write):
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then rename it.

    The temporary file is flushed and fsync'ed before ``os.replace``, and the directory
    after it, so the new content is durable once this returns. On any error (including
    ``KeyboardInterrupt``) the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms where a directory cannot be opened (Windows)
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
