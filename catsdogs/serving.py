"""Exports taking raw uint8 RGB pixels (SavedModel signature `serve`: any size, by data.resize;
`resized` and TFLite: data.decode_image's squares), and one loader for them and .keras alike."""
import os
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import fingerprint_pb2

from catsdogs.data import resize
from catsdogs.models import BACKBONES

ANY_SIZE_ENDPOINT, RESIZED_ENDPOINT = "serve", "resized"
# tf.lite.Interpreter warns on every use that it moves to ai_edge_litert (not a requirement).
warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")


def export_saved_model(model, preprocess, image_size, path):
    """A build_classifier model and its preprocessing as a SavedModel; same model, same bytes."""
    def resized(images):
        return model(preprocess(tf.cast(images, tf.float32)), training=False)[:, 0]

    def any_size(images):  # (the graph's function names come from these two names)
        return resized(resize(images, image_size))

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also `serving_default`, what TF Serving calls.
    archive.add_endpoint(ANY_SIZE_ENDPOINT, any_size, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.add_endpoint(RESIZED_ENDPOINT, resized, input_signature=[
        tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name="images")])
    _in_name_order(archive)
    archive.write_out(str(path), verbose=False)
    # Drop the fingerprint's random uuid; its graph and checkpoint hashes stay for reloads.
    fingerprint_file = Path(path) / "fingerprint.pb"
    fingerprint = fingerprint_pb2.FingerprintDef.FromString(fingerprint_file.read_bytes())
    fingerprint.ClearField("uuid")
    fingerprint_file.write_bytes(fingerprint.SerializeToString(deterministic=True))


def _in_name_order(archive):
    """Sort the variables by name before Keras writes: its order, and the bytes, vary by run."""
    list_variables = archive._filter_and_track_resources

    def listed_in_name_order():
        list_variables()
        trackable = archive._tf_trackable
        trackable._all_variables = sorted(trackable._all_variables, key=lambda v: v.name)
    archive._filter_and_track_resources = listed_in_name_order


def convert_tflite(saved_model, representative_images=None):
    """TFLite bytes of `resized` (from_keras_model fails on Keras 3 models); representative_images
    (uint8 squares, calibrating ranges) make it int8: uint8 pixels in, p(dog) out in 1/256 steps."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model),
                                                         signature_keys=[RESIZED_ENDPOINT])
    if representative_images is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([im[None]] for im in representative_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def size_bytes(path):
    """A file's size, or a folder's (every file below it)."""
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


class KerasClassifier:
    """A .keras classifier, preprocessed here as the pipeline does, outside the model."""
    def __init__(self, path):
        self.model = keras.models.load_model(path)  # safe_mode (the default): no code loaded
        backbone = self.model.name.removesuffix("_classifier")  # build_classifier's name
        if backbone not in BACKBONES:
            raise ValueError(f"{path}: model {self.model.name!r} is not a classifier of a known "
                             f"backbone ({', '.join(BACKBONES)})")
        self.preprocess = BACKBONES[backbone].preprocess
        self.image_size = self.model.input_shape[1]

    def __call__(self, images):
        # predict_on_batch: one compiled graph, several times faster than eager model(...)
        inputs = self.preprocess(np.asarray(images, np.float32))
        return np.asarray(self.model.predict_on_batch(inputs))[:, 0]


class SavedModelClassifier:
    """The exported SavedModel: images of any size (one size per batch)."""
    image_size = None

    def __init__(self, path):
        self.loaded = tf.saved_model.load(str(path))  # owns the variables `serve` reads
        self.serve = getattr(self.loaded, ANY_SIZE_ENDPOINT)

    def __call__(self, images):
        return self.serve(tf.constant(images, tf.uint8)).numpy()


class TFLiteClassifier:
    """A TFLite model: images of its input size; quantized input and output handled here."""
    def __init__(self, path, threads=None):
        self.interpreter = tf.lite.Interpreter(model_path=str(path),
                                               num_threads=tflite_threads(threads))
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.image_size = int(self.input["shape_signature"][1])
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
        return output.reshape(len(images))


def tflite_threads(threads):
    return threads or os.cpu_count()


def load(path, threads=None):
    """A classifier of a .keras, .tflite or SavedModel path: classifier(uint8 (N, s, s, 3)) ->
    p(second class), shape (N,); s is classifier.image_size, any when it is None."""
    path = Path(path)
    if path.suffix == ".keras" and path.is_file():
        return KerasClassifier(path)
    if path.suffix == ".tflite" and path.is_file():
        return TFLiteClassifier(path, threads)
    if (path / "saved_model.pb").is_file():
        return SavedModelClassifier(path)
    raise ValueError(f"{path}: not a model (a .keras file, a .tflite file or a SavedModel "
                     f"folder holding saved_model.pb)")
