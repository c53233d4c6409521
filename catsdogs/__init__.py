"""Shared code of the cats-vs-dogs pipeline (stages/) and its studies (studies/)."""
import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the stage's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
