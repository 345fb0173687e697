"""A run folder's integrity: one writer at a time, a metrics file that never runs ahead of the checkpoint,
a config.yaml that agrees with the checkpoint, no stale temporary files, names that stay inside `--runs`.

The checkpoint is the truth about a run; everything else in the folder is made to agree with it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from simulator.i18n import _

try:
    import fcntl
except ImportError:  # not a POSIX system: no advisory locks, one writer is the user's to ensure
    fcntl = None

LOCK_FILE = ".lock"
TEMP_GLOB = ".checkpoint-*.tmp"  # what atomic_file leaves of checkpoint.npz after a kill mid-write


class RunFolderError(Exception):
    """A run folder that cannot be used as asked (one sentence)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets here (0o666 less the umask), for files made through mkstemp (0o600)."""
    return 0o666 & ~_umask()


def folder_name(name: str) -> str:
    """A preset name as one safe path component: no separators, no leading dots, at most 80 characters."""
    safe = re.sub(r"[^\w.+-]+", "-", name).strip(".-")[:80]
    return safe or "run"


@contextmanager
def atomic_file(path: Path, mode: str = "w"):
    """A file object whose contents replace `path` only when the block ends without error: written to a temp
    file beside it (same file system, so the rename is atomic), flushed to disk, then renamed. A crash or an
    error mid-write leaves the old file untouched and at most a stray `.NAME-*.tmp` (removed on the next start)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())  # mkstemp's 0o600: the file gets the mode of the folder's other files
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` through `atomic_file`: the old file or the new, never half of one."""
    with atomic_file(path) as f:
        f.write(text)


def new_run_dir(root: Path, name: str, first_file: str, text: str) -> Path:
    """runs/<name>-<timestamp> holding `first_file`; the folder appears only once that file is written whole."""
    if root.exists() and not root.is_dir():
        raise RunFolderError(_("--runs {root} is a file, not a folder").format(root=root))
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    staging = Path(tempfile.mkdtemp(prefix=".new-run-", dir=root))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0o700; a run folder is like any other
        write_atomically(staging / first_file, text)
        base = root / f"{folder_name(name)}-{stamp}"
        path, n = base, 1
        while True:
            try:
                os.rename(staging, path)  # fails when the name exists: two runs started within a second
                return path
            except OSError:
                if not path.exists():
                    raise
                n += 1
                path = base.with_name(f"{base.name}-{n}")
    except BaseException:
        if staging.exists():
            for f in staging.iterdir():
                f.unlink(missing_ok=True)
            staging.rmdir()
        raise


class RunLock:
    """An exclusive advisory lock on a run folder, held until release() or the process ends (kill -9 included)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Takes the lock or raises RunFolderError naming the process that holds it."""
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(_("{parent}: in use by process {holder} (another train is writing this run folder; "
                                   "wait for it or stop it)").format(parent=self.path.parent, holder=holder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Lets the next process in (the lock file stays: a later process takes it over)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Deletes the temporary checkpoints a killed save left behind (safe: the caller holds the lock)."""
    stale = sorted(Path(run_dir).glob(TEMP_GLOB))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def reconcile_metrics(path: Path, last_step: int) -> float:
    """Drops rows of metrics.csv after `last_step` (the checkpoint's), rewriting it atomically; returns the
    wall time of the last row kept (0 when none), from which the resumed run counts on."""
    if not path.exists():
        return 0.0
    text = path.read_text()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return 0.0
    header, body = rows[0], rows[1:]
    try:
        step_col, wall_col = header.index("step"), header.index("wall_time")
    except ValueError:
        raise RunFolderError(_("{path}: not a metrics file of this program (no step / wall_time columns)").format(
                                 path=path)) from None
    kept = []
    for row in body:
        try:
            if int(row[step_col]) <= last_step:
                kept.append(row)
        except (ValueError, IndexError):  # a row cut off by a kill mid-write
            continue
    if len(kept) != len(body):
        out = io.StringIO()
        csv.writer(out).writerows([header, *kept])
        write_atomically(path, out.getvalue())
    try:
        return float(kept[-1][wall_col]) if kept else 0.0
    except (ValueError, IndexError):
        return 0.0
