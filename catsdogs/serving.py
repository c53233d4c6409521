"""The trained classifier in forms people can run: a SavedModel and TFLite float32 / int8
models that take raw uint8 RGB pixels, and one loader that runs any of them, or the .keras
model, the same way (stage export scores what the predict command runs).

The .keras model expects images decoded, resized and passed through the backbone's
preprocess_input (the pipeline does that in tf.data, outside the model). The exports carry
those steps in their graphs:

- SavedModel, signature `serving_default` (also `serve`): uint8 (batch, any height, any
  width, 3), resized in the graph exactly as data.decode_image resizes;
- SavedModel, signature `resized`, and both TFLite files: uint8 (batch, size, size, 3),
  already resized by data.decode_image (the predict command does that). The TFLite models
  convert from this signature, so their resize stays where the pipeline's is: their inputs
  are the pipeline's to the bit, and the int8 graph has no float round-and-cast to carry.

All of them return p(second class) (classes sorted: dogs), shape (batch,).
"""
import os
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import fingerprint_pb2

from catsdogs.models import BACKBONES

ANY_SIZE_ENDPOINT, RESIZED_ENDPOINT = "serve", "resized"
# tf.lite.Interpreter warns on every use that it will move to the ai_edge_litert package,
# which is not among the project's requirements; it is still what TensorFlow 2.21 ships.
warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")


def resize_like_decode(images, image_size):
    """uint8 images of any size -> uint8 (image_size x image_size), as data.decode_image does
    it (bilinear in float, rounded, clipped). Repeated here because decode_image starts from
    file bytes; tests/test_export.py checks the two agree pixel for pixel."""
    resized = tf.image.resize(images, [image_size, image_size])
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def export_saved_model(model, preprocess, image_size, path):
    """model (a classifier build_classifier made) with its preprocessing in the graph, as a
    SavedModel with the two signatures described above; byte for byte the same for the same
    model (see _in_name_order)."""
    def resized(images):
        return model(preprocess(tf.cast(images, tf.float32)), training=False)[:, 0]

    def any_size(images):
        return resized(resize_like_decode(images, image_size))

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also `serving_default`, what TF Serving and saved_model_cli call.
    archive.add_endpoint(ANY_SIZE_ENDPOINT, any_size, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.add_endpoint(RESIZED_ENDPOINT, resized, input_signature=[
        tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name="images")])
    _in_name_order(archive)
    archive.write_out(str(path), verbose=False)
    _drop_fingerprint_uuid(Path(path) / "fingerprint.pb")


def _in_name_order(archive):
    """Keras lists the variables the endpoints use in an order that changes from run to run
    (the SavedModel's graph and checkpoint follow it), so the same model would give new bytes,
    and a new hash in dvc.lock, on every export. Sorting them by name, after Keras lists them
    and before it writes, fixes the order."""
    list_variables = archive._filter_and_track_resources

    def listed_in_name_order():
        list_variables()
        trackable = archive._tf_trackable
        trackable._all_variables = sorted(trackable._all_variables, key=lambda v: v.name)
    archive._filter_and_track_resources = listed_in_name_order


def _drop_fingerprint_uuid(fingerprint_file):
    """TensorFlow stamps each SavedModel's fingerprint with a random uuid; the rest of the
    fingerprint (hashes of the graph and checkpoint) stays, so a reload still checks it."""
    fingerprint = fingerprint_pb2.FingerprintDef()
    fingerprint.ParseFromString(fingerprint_file.read_bytes())
    fingerprint.ClearField("uuid")
    fingerprint_file.write_bytes(fingerprint.SerializeToString(deterministic=True))


def convert_tflite(saved_model, representative_images=None):
    """TFLite bytes of the SavedModel's `resized` signature (TFLiteConverter.from_keras_model
    does not work with Keras 3 models). With representative_images (uint8, N x size x size x
    3), full-integer int8: uint8 pixels in, as they are (the graph casts them), int8 inside,
    p(dog) out as uint8 in steps of 1/256; the images calibrate each tensor's range."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model),
                                                         signature_keys=[RESIZED_ENDPOINT])
    if representative_images is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in
                                                    representative_images)
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
    """A .keras classifier; the pipeline's preprocessing runs here, outside the model."""

    def __init__(self, path):
        self.model = keras.models.load_model(path)  # safe_mode (the default): no code loaded
        backbone = self.model.name.removesuffix("_classifier")  # build_classifier's name
        if backbone not in BACKBONES:
            raise ValueError(f"{path}: model {self.model.name!r} is not a classifier of a known "
                             f"backbone ({', '.join(BACKBONES)})")
        self.preprocess = BACKBONES[backbone].preprocess
        self.image_size = self.model.input_shape[1]

    def __call__(self, images):
        # predict_on_batch runs the model as one compiled graph; model(...) runs it eagerly,
        # layer by layer, several times slower.
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
    """export.tflite_threads: None is one thread per CPU core."""
    return threads or os.cpu_count()


def load(path, threads=None):
    """A classifier for any of the model files: .keras, a SavedModel folder, .tflite.
    classifier(uint8 images (N, s, s, 3)) -> p(second class), shape (N,); images must be
    classifier.image_size square (data.decode_image(bytes, image_size)), or any one size
    when image_size is None."""
    path = Path(path)
    if path.suffix == ".keras" and path.is_file():
        return KerasClassifier(path)
    if path.suffix == ".tflite" and path.is_file():
        return TFLiteClassifier(path, threads)
    if (path / "saved_model.pb").is_file():
        return SavedModelClassifier(path)
    raise ValueError(f"{path}: not a model (a .keras file, a .tflite file or a SavedModel "
                     f"folder holding saved_model.pb)")


def probabilities(classifier, images, batch_size):
    """p(second class) of every image, batch_size at a time."""
    return np.concatenate([classifier(images[start:start + batch_size])
                           for start in range(0, len(images), batch_size)])
