"""File-system helpers of the data stages (fetch, validate): one run at a time, printable names."""
import contextlib
import fcntl
import os


@contextlib.contextmanager
def locked(folder, stage):
    """Hold an exclusive lock on folder while the block runs: a second fetch or validate
    started meanwhile (directly or through dvc repro) stops at once instead of racing this one."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"{stage}: {folder}/ is locked (flock) by another fetch or "
                             f"validate run; wait for it to end, then run again") from None
        yield
    finally:
        os.close(descriptor)


def named(path):
    """A path as text any report can hold: bytes of a name that are not UTF-8 show as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
