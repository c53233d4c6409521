# As stages/__init__.py: catsdogs drops TensorFlow's CUDA probe lines from the study's output.
import catsdogs  # noqa: F401
