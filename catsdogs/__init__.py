"""Shared code of the cats-vs-dogs pipeline (stages/) and its studies (studies/)."""
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import threading

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the stage's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What TF_CPP_MIN_LOG_LEVEL cannot hide: a TensorFlow built with CUDA support writes these
# lines straight to file descriptor 2 while it is imported and at its first device query, on
# a machine without CUDA drivers (five lines per process). Only these are dropped, and the
# cuInit failure only after "no drivers": with a driver, it is a real error.
ABSL_PRE_INIT = re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is "
                           r"called are written to STDERR$")
NO_CUDA_DRIVERS = re.compile(r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your "
                             r"machine, GPU will not be used")
CUINIT_FAILED = re.compile(r"cuda_platform\.cc:\d+\] failed call to cuInit: ")


@contextlib.contextmanager
def cuda_probe_lines_dropped():
    """File descriptor 2 through a pipe while the block runs: a thread passes each line on to
    stderr as it comes, but the CUDA probe's. Without a usable fd 2 the block runs as is."""
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except (AttributeError, OSError):  # no sys.stderr, or fd 2 closed
        yield
        return
    with contextlib.suppress(AttributeError, OSError):  # room for any burst of output
        import fcntl
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)
    forwarder = threading.Thread(target=_forward, args=(read_end, original), daemon=True)
    forwarder.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last write end closes: the forwarder sees its end
        forwarder.join()
        os.close(original)


def _forward(read_end, stderr):
    drivers_missing = False
    with open(read_end, "rb") as lines:
        for line in lines:
            text = line.decode(errors="replace")
            probe = bool(ABSL_PRE_INIT.search(text) or NO_CUDA_DRIVERS.search(text)
                         or (drivers_missing and CUINIT_FAILED.search(text)))
            drivers_missing = drivers_missing or bool(NO_CUDA_DRIVERS.search(text))
            if not probe:
                os.write(stderr, line)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """The first `import tensorflow` (whoever makes it) and its device query, which runs the
    CUDA probe at once (set CUDA_VISIBLE_DEVICES before it), under cuda_probe_lines_dropped."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_quietly(module):
            with cuda_probe_lines_dropped():
                exec_module(module)
                with contextlib.suppress(Exception):  # its errors come back at first use
                    module.config.list_physical_devices()

        spec.loader.exec_module = exec_quietly
        return spec


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlowImport())
