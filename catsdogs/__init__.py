"""Shared code of the cats-vs-dogs pipeline; the stages live in stages/."""
import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the stage's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
