"""Reading the artifact (models/export/, which stage export writes): classifier.json, and one
loader per format in it, each classifier answering (N, K) probabilities of RGB 0-255 images."""
import json
import os
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from catsdogs import paths
from catsdogs.evaluation import class_probabilities, predicted

PIXELS_ENDPOINT, BYTES_ENDPOINT, RESIZED_ENDPOINT = "serve", "serve_bytes", "resized"
INPUT = "RGB 0-255, resized to image_size x image_size (bilinear)"
DEFAULT_FORMAT = paths.TFLITE_FLOAT32.name  # an artifact folder's: see load()


class BadModel(ValueError):
    """A model file or folder that cannot classify: its message is one line naming it."""


# tf.lite.Interpreter warns on every use that it moves to ai_edge_litert (not a requirement).
warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")


def read_description(folder):
    """classifier.json of an artifact folder, checked enough to classify with."""
    file = Path(folder) / paths.DESCRIPTION.name
    if not file.is_file():
        raise BadModel(f"{folder}: no {file.name} beside the model: load a model from the "
                       f"artifact folder (stage export writes {paths.EXPORT}/)")
    try:
        description = json.loads(file.read_bytes())
        classes, size, threshold = (description[key] for key in
                                    ("classes", "image_size", "threshold"))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise BadModel(f"{file}: not a classifier description ({one_line(error)})") from None
    if not (isinstance(classes, list) and len(classes) >= 2 and
            all(isinstance(name, str) for name in classes) and type(size) is int and size > 0
            and (len(classes) > 2 or isinstance(threshold, (int, float)))):
        raise BadModel(f"{file}: needs classes (2 or more names), image_size (pixels) and, "
                       f"for 2 classes, a threshold")
    return description


def one_line(error, limit=300):
    """An exception's message in one line, cut at limit characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Classifier:
    """classifier(uint8 images (N, s, s, 3)) -> float probabilities (N, K), a column per
    class of classifier.json; s is its image_size (the SavedModel takes any size)."""

    def __init__(self, description):
        self.classes, self.image_size, self.threshold = (
            description[key] for key in ("classes", "image_size", "threshold"))

    def classes_of(self, probabilities):
        """The class names predicted (evaluation.predicted: two classes by the threshold)."""
        return [self.classes[label] for label in predicted(probabilities, self.threshold)]

    def check(self, path, image_shape, probabilities):
        """Stop if the model is not the one classifier.json describes."""
        size = self.image_size
        if (tuple(image_shape) not in [(size, size, 3), (None, None, 3)]
                or probabilities != len(self.classes)):
            raise BadModel(f"{path}: takes {tuple(image_shape)} images and gives "
                           f"{probabilities} probabilities, but {paths.DESCRIPTION.name} "
                           f"says ({size}, {size}, 3) and {len(self.classes)} classes")


def load_keras(path):
    """A .keras model, checked whole first (Keras calls a cut-short file "File not found")."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except zipfile.BadZipFile:
        damaged = "its zip directory"
    except OSError as error:
        raise BadModel(f"{path}: not readable ({error.strerror})") from None
    if damaged:
        raise BadModel(f"{path}: a damaged .keras file ({damaged} unreadable: cut short?)")
    try:
        return keras.models.load_model(path)  # safe_mode (the default): no code loaded
    except Exception as error:  # Keras raises many kinds on a bad archive
        raise BadModel(f"{path}: not a readable Keras model ({one_line(error)})") from None


def tflite_threads(threads=None):
    """The TFLite interpreter's threads: as given, else one per core."""
    return threads or os.cpu_count()


class KerasClassifier(Classifier):
    """A .keras model taking RGB 0-255 (its preprocessing is a layer inside)."""

    def __init__(self, path, description, threads=None):
        super().__init__(description)
        self.model = load_keras(path)
        self.check(path, self.model.input_shape[1:], max(2, self.model.output_shape[-1]))

    def __call__(self, images):
        # predict_on_batch: one compiled graph, several times faster than eager model(...)
        outputs = self.model.predict_on_batch(np.asarray(images, np.float32))
        return class_probabilities(np.asarray(outputs))


class SavedModelClassifier(Classifier):
    """The exported SavedModel's `serve`: images of any size (one size per batch)."""

    def __init__(self, path, description, threads=None):
        super().__init__(description)
        self.loaded = tf.saved_model.load(str(path))  # owns the variables `serve` reads
        if PIXELS_ENDPOINT not in self.loaded.signatures:
            raise BadModel(f"{path}: a SavedModel without a `{PIXELS_ENDPOINT}` endpoint "
                           f"(it has: {', '.join(self.loaded.signatures) or 'none'})")
        signature = self.loaded.signatures[PIXELS_ENDPOINT]
        images = signature.structured_input_signature[1].get("images")
        outputs = signature.structured_outputs.get("probabilities")
        self.check(path, images.shape[1:] if images is not None else (),
                   outputs.shape[-1] if outputs is not None else None)
        self.serve = getattr(self.loaded, PIXELS_ENDPOINT)

    def __call__(self, images):
        return self.serve(tf.constant(images, tf.uint8))["probabilities"].numpy()


class TFLiteClassifier(Classifier):
    """A TFLite model: images of its input size; quantized input and output handled here."""

    def __init__(self, path, description, threads=None):
        super().__init__(description)
        content = Path(path).read_bytes()
        if content[4:8] != b"TFL3":  # the flatbuffer's file identifier
            raise BadModel(f"{path}: not a TFLite model (no TFL3 identifier)")
        # From bytes, TFLite verifies the flatbuffer (from a path it does not, and a file cut
        # short can crash the process).
        self.interpreter = tf.lite.Interpreter(model_content=content,
                                               num_threads=tflite_threads(threads))
        self.interpreter.allocate_tensors()  # a model whose ops do not fit fails here
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        shape, width = self.input["shape_signature"], self.output["shape_signature"]
        self.check(path, [int(n) for n in shape[1:]], int(width[-1]) if len(width) == 2 else None)
        self.batch = None

    def __call__(self, images):
        images = np.asarray(images)
        if self.batch != len(images):  # resizing the input reallocates: only when it changes
            self.interpreter.resize_tensor_input(self.input["index"], images.shape)
            self.interpreter.allocate_tensors()
            self.batch = len(images)
        scale, zero_point = self.input["quantization"]
        if scale:  # our int8 model takes raw pixels (no scale); another might not
            images = np.round(images / scale + zero_point)
        self.interpreter.set_tensor(self.input["index"], images.astype(self.input["dtype"]))
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output["index"])
        scale, zero_point = self.output["quantization"]
        if scale:
            output = (output.astype(np.float32) - zero_point) * scale
        return output.reshape(len(images), -1)


def load(path, threads=None):
    """The classifier of an artifact folder (its float32 TFLite model: the fastest to start,
    answering as the Keras model does within 1e-5) or of a model in it. Bad ones: BadModel."""
    path = Path(path)
    if not path.exists():
        raise BadModel(f"{path} does not exist (stage export writes the artifact folder, "
                       f"{paths.EXPORT}/)")
    if (path / paths.DESCRIPTION.name).is_file():
        path = path / DEFAULT_FORMAT
    if path.suffix == ".keras" and path.is_file():
        kind = KerasClassifier
    elif path.suffix == ".tflite" and path.is_file():
        kind = TFLiteClassifier
    elif (path / "saved_model.pb").is_file():
        kind = SavedModelClassifier
    else:
        raise BadModel(f"{path}: not a model (an artifact folder holding "
                       f"{paths.DESCRIPTION.name}, or a .keras, .tflite or SavedModel in one)")
    description = read_description(path.parent)
    try:
        return kind(path, description, threads)
    except BadModel:
        raise
    except Exception as error:  # each format's loader raises its own kinds on a damaged file
        raise BadModel(f"{path}: not a readable model ({one_line(error)})") from None
