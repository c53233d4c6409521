"""Shared code of the cats-vs-dogs pipeline (stages/) and its studies (studies/)."""
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the stage's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What TF_CPP_MIN_LOG_LEVEL cannot hide: a TensorFlow built with CUDA support writes these
# lines straight to file descriptor 2 while it is imported and at its first device query, on
# every machine without CUDA drivers (five lines per process). Only these lines are dropped.
CUDA_PROBE_LINES = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit: ")


@contextlib.contextmanager
def cuda_probe_lines_dropped():
    """File descriptor 2 held in a temporary file; then every line but CUDA_PROBE_LINES goes
    on to stderr, in order (also when the block raises)."""
    sys.stderr.flush()
    original = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(original, 2)
            os.close(original)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not CUDA_PROBE_LINES.search(line)))
            sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """The first `import tensorflow` (whoever makes it) and its device query run under
    cuda_probe_lines_dropped."""

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
                module.config.list_physical_devices()  # the CUDA probe runs (and logs) here

        spec.loader.exec_module = exec_quietly
        return spec


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlowImport())
