"""File-system helpers of the stages: locks, printable names, sorted walks, atomic outputs."""
import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path

from catsdogs import paths

PARTIAL = ".partial-"  # .<name>.partial-XXXX: a file or folder being written, never read
# What a path is when it is not a regular file (by os.stat's mode): never opened, it could
# block (a FIFO) or never end (a device).
NOT_REGULAR = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO",
               stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket"}


@contextlib.contextmanager
def locked(stage, folder=None):
    """Hold .backups/<stage, or folder>.lock (flock; our pid in it) while the block runs: a
    second run (`dvc repro` after kill -9 of dvc alone leaves the first running) stops at once,
    not racing the first (e.g. resuming from its backup as it writes it). Stages given a folder
    (fetch, validate: data/, made first) share its lock."""
    for needed in filter(None, (folder, paths.BACKUPS)):
        try:
            needed.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a plain file (or a link to one) in the way
            raise SystemExit(in_the_way(stage, needed)) from None
    with open(paths.BACKUPS / f"{paths.slug(folder or stage)}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise SystemExit(f"{stage}: another run (pid {lock.read().strip() or '?'}) holds "
                             f"{lock.name}; wait for it to end or stop it, then run "
                             f"again") from None
        lock.truncate(0)
        print(os.getpid(), file=lock, flush=True)
        yield


def in_the_way(stage, path):
    return f"{stage}: {path} exists but is not a folder: move it away, then run again"


def named(path):
    """A path as text any report can hold: bytes of a name that are not UTF-8 show as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def walk(folder, onerror=None):
    """(folder, sorted names of all but real folders) for each real folder; links not entered."""
    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror):
        dirnames.sort()
        links = [name for name in dirnames if os.path.islink(os.path.join(dirpath, name))]
        yield Path(dirpath), sorted(filenames + links)


def discard(*outputs):
    """Remove old outputs and partial copies first: a failed run leaves no result looking new."""
    for output in map(Path, outputs):
        for path in [output, *sorted(output.parent.glob(f".{output.name}{PARTIAL}*"))]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def replaced(target):
    """Write target atomically: the block writes the path yielded, renamed to target if it ends."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A hidden folder beside target: same file system, so the rename is atomic.
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}{PARTIAL}", dir=target.parent))
    try:
        yield scratch / target.name
        if target.is_dir() and not target.is_symlink():  # a rename cannot replace a full folder
            os.replace(target, scratch / "previous")
        os.replace(scratch / target.name, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def require(path, stage, made_by):
    if not Path(path).exists():
        raise SystemExit(f"{stage}: {path} is missing: run python -m stages.{made_by} first "
                         f"(a {made_by} run that failed leaves none)")
