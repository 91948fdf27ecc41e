"""What every reader and writer of :mod:`unet.io` shares: the error type, file checks, atomic writes.

A missing file raises :class:`FileNotFoundError`; every other problem with a file's content raises
:class:`DataFileError` (a :class:`ValueError`) whose message starts with the file path. All writers are
atomic (:func:`atomic_write`): output goes to a hidden temporary file beside the target and is moved into
place with :func:`os.replace`, so a crash or kill never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

PathLike = str | os.PathLike


class DataFileError(ValueError):
    """A data file is empty, corrupt, unreadable or has invalid content.

    The message always starts with the file path. ``path`` holds the offending file.
    """

    def __init__(self, path: PathLike, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


def check_file(path: PathLike) -> Path:
    """Return ``path`` as a Path after checking that it is a non-empty regular file.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFileError: The path is a directory or the file is empty.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: file not found")
    if p.is_dir():
        raise DataFileError(p, "is a directory, expected a file")
    if p.stat().st_size == 0:
        raise DataFileError(p, "file is empty")
    return p


def lower_suffix(path: Path) -> str:
    """Lower-case file suffix, ``.ome.tif`` counted as ``.tif``."""
    return path.suffix.lower()


@contextlib.contextmanager
def atomic_write(path: PathLike, *, replace_folder: bool = False) -> Iterator[Path]:
    """Context manager for writing a file atomically.

    Yields a temporary path in the same directory as ``path`` (hidden name, same suffix, so that
    libraries choosing the format from the suffix behave). Write the whole output to it; on normal exit
    the temporary file is flushed to disk and moved onto ``path`` with :func:`os.replace` (atomic on
    POSIX), on an exception it is deleted and ``path`` is left untouched (an existing file keeps its old
    content). After a hard kill only a hidden ``.<name>.<random>.tmp<suffix>`` file can remain.
    Parent directories are created.

    Args:
        path: Final destination.
        replace_folder: A folder at ``path`` is replaced too (:func:`move_into_place`; export's
            ``overwrite=true``); otherwise the rename fails and the folder is kept.

    Yields:
        The temporary path to write to.

    Example:
        >>> with atomic_write("out/table.csv") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("a,b\\n1,2\\n")
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.tmp{final.suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{final}: the writer did not create the temporary file {tmp}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if replace_folder:
            move_into_place(tmp, final)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise_if_disk_full(e, final)
        raise


def umask_mode(directory: bool = False) -> int:
    """The permission bits a new file (0666) or folder (0777) gets under the process's umask, as ``open`` and
    ``mkdir`` give them: what a temporary made by :mod:`tempfile` (0600 / 0700) is set to before it takes the
    final name, so that a shared checkpoint or package is readable by whom the user's umask allows."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def follow_umask(path: Path) -> None:
    """Give the file or folder ``path`` (made by :mod:`tempfile`, private) the modes of :func:`umask_mode`."""
    os.chmod(path, umask_mode(path.is_dir()))


def move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished temporary file or folder ``tmp`` to ``final`` (in the same directory).

    A file replaces a file (or a link) with one :func:`os.replace`, atomically. Where a folder is at either
    end, which :func:`os.replace` cannot replace, the existing ``final`` is first renamed aside to the
    hidden ``.<name>.<random>.old.tmp``, then removed (renamed back if the second rename fails; after a
    kill in between, :func:`clean_stale_temporaries` removes it).
    """
    occupied = final.exists() or final.is_symlink()
    if not occupied or not (tmp.is_dir() or (final.is_dir() and not final.is_symlink())):
        os.replace(tmp, final)
        return
    old = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.old.tmp"
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)
        raise
    remove_path(old)


def remove_path(path: Path) -> None:
    """Remove a file, link or folder (a folder with what is in it), quietly."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def raise_if_disk_full(e: BaseException, final: Path) -> None:
    """Turn a failed write caused by a full disk into one clear ``OSError(ENOSPC)`` naming ``final``."""
    if _disk_full(e):
        raise OSError(
            errno.ENOSPC, f"{final}: disk full (no space left on the device); nothing written"
        ) from e


def _disk_full(e: BaseException) -> bool:
    """An exception caused (directly or in its chain) by a full disk (ENOSPC), whatever library raised it."""
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def clean_stale_temporaries(directory: PathLike, names: Sequence[str]) -> list[Path]:
    """Remove the hidden temporaries a killed run left for these output ``names`` (files or .zarr dirs).

    :func:`atomic_write` and :func:`atomic_zarr` write under ``.<name>.<token>.tmp*`` (a replaced store is
    moved aside to ``.<name>.<token>.old.tmp``); a hard kill can leave
    one behind. Returns what was removed.
    """
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for name in names:
        for stale in d.glob(f".{glob_escape(name)}.*.tmp*"):
            remove_path(stale)
            removed.append(stale)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return glob.escape(name)


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_text(path: PathLike) -> str:
    """The text (UTF-8) of a file.

    Raises:
        FileNotFoundError: The file does not exist.
    """
    return Path(path).read_text(encoding="utf-8")
