"""Kill -9 resume: a training phase killed at any moment restarts after its last completed
epoch and ends as an uninterrupted run would. (Keras' BackupAndRestore writes its files in
place: a kill during the write left a torn HDF5 file.)"""
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import keras

from catsdogs import paths


def run_key(model):
    """What a backup belongs to: params, code, stage arguments, data, starting weights."""
    digest = hashlib.sha256(paths.PARAMS.read_bytes())
    stage = getattr(sys.modules["__main__"], "__file__", None)
    for code in sorted(Path(__file__).parent.glob("*.py")) + ([Path(stage)] if stage else []):
        digest.update(code.read_bytes())
    digest.update(repr(sys.argv[1:]).encode())
    for data in sorted(paths.DECODED.glob("*")):
        stat = data.stat()
        digest.update(f"{data}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for weights in model.weights:
        digest.update(keras.ops.convert_to_numpy(weights).tobytes())
    return digest.hexdigest()


class EpochBackup(keras.callbacks.Callback):
    """After every epoch, the weights file, then an atomic rename of the state file naming it
    (with the epochs' logs). Build it before fit, fit from `first_epoch`, replay `history`."""

    def __init__(self, model, live_dir):
        super().__init__()
        # One flat folder per live dir: an absolute live dir must not put it inside itself.
        self.directory = paths.BACKUPS / paths.slug(live_dir)
        self.state_file = self.directory / "state.json"
        self.key, self.history = run_key(model), []
        self.set_model(model)
        if self._restore():
            print(f"{live_dir}: resumed after epoch {len(self.history)} from {self.directory}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def first_epoch(self):
        return len(self.history)

    def _restore(self):
        try:
            state = json.loads(self.state_file.read_text())
            if state["key"] != self.key:
                return False
            self.model.optimizer.build(self.model.trainable_variables)  # so its state can load
            self.model.load_weights(self.directory / state["weights"])
            self.history = state["history"]
            return True
        except (OSError, ValueError, KeyError) as error:
            if self.state_file.exists():
                print(f"{self.directory}: backup unreadable ({error}); starting over")
            return False

    def on_epoch_end(self, epoch, logs=None):
        self.history.append(dict(logs or {}))
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = self.directory / f"epoch-{epoch + 1}.weights.h5"
        partial = self.directory / "partial.weights.h5"
        self.model.save_weights(partial)
        os.replace(partial, weights)
        state = {"key": self.key, "weights": weights.name, "history": self.history}
        (self.directory / "state.partial").write_text(json.dumps(state))
        os.replace(self.directory / "state.partial", self.state_file)
        for old in self.directory.glob("epoch-*.weights.h5"):
            if old != weights:
                old.unlink()

    def on_train_end(self, logs=None):
        shutil.rmtree(self.directory, ignore_errors=True)  # finished: nothing to resume
