# Imported before any stage module: catsdogs then drops TensorFlow's CUDA probe lines from the
# stage's output, whichever module imports TensorFlow first.
import catsdogs  # noqa: F401
