"""Where every stage reads and writes, relative to the project root (no TensorFlow: it is light)."""
import os
import re
from pathlib import Path

PARAMS = Path("params.yaml")
RAW = Path("data/raw")                      # fetch: <split>/<class>/<file>, as in the source
SOURCE_SPLITS = ("train", "validation")     # the dataset's own folders; validation is our test set
MANIFEST = Path("data/validated/manifest.csv")
SPLIT = Path("data/split")                  # <split>.csv: one row per image
SPLITS = ("train", "val", "test")
DECODED = Path("data/decoded")              # <split>.images.npy, .labels.npy; split-file order
PRETRAINED = Path("models/pretrained")      # <backbone>_<size>.weights.h5: starting weights
BASELINE_MODEL = Path("models/baseline.keras")
HEAD_MODEL = Path("models/head.keras")
FINAL_MODEL = Path("models/final.keras")
REPORTS = Path("reports")                   # reports/<stage>/: metrics, plots, tables
PRETRAINED_REPORTS = REPORTS / "pretrained"  # <backbone>_<size>.json: where the weights came from
FETCH_REPORTS = REPORTS / "fetch"
VALIDATE_REPORTS = REPORTS / "validate"
SPLIT_METRICS = REPORTS / "split" / "metrics.json"
BASELINE_LIVE = REPORTS / "baseline"        # dvclive: metrics.json, plots/metrics/{train,eval}/
HEAD_LIVE = REPORTS / "train_head"
FINETUNE_LIVE = REPORTS / "finetune"
EVALUATE_REPORTS = REPORTS / "evaluate"
COMPARE_REPORTS = REPORTS / "compare"
COMPARE_RUNS = COMPARE_REPORTS / "runs"     # <backbone>/{head,finetune}/ and metrics.json
BACKUPS = Path(".backups")                  # resume state; not a DVC output: DVC never deletes it
TIMING = REPORTS / "timing"                 # wall times: not DVC outputs, they change every run
EXPORT = Path("models/export")              # the artifact: everything a user needs, nothing else
EXPORT_MODEL = EXPORT / "model.keras"           # a copy of FINAL_MODEL (RGB 0-255 in)
DESCRIPTION = EXPORT / "classifier.json"        # classes, threshold, image size: serving.describe
LABELS = EXPORT / "labels.txt"                  # the class names, one a line, in label order
SAVED_MODEL = EXPORT / "saved_model"            # uint8 RGB images of any size, or their bytes, in
TFLITE_FLOAT32 = EXPORT / "model_float32.tflite"  # uint8 RGB, image_size square, in
TFLITE_INT8 = EXPORT / "model_int8.tflite"      # the same, full-integer quantized
EXPORT_REPORTS = REPORTS / "export"
MODEL_CARD = Path("MODEL_CARD.md")              # scripts/model_card.py writes it


def slug(path):
    """A flat file name for a (possibly absolute) path: reports/train_head -> reports_train_head."""
    return re.sub(r"[^\w.-]+", "_", str(path)).strip("_")


def pretrained_weights(backbone, image_size):
    return PRETRAINED / f"{backbone}_{image_size}.weights.h5"


def pretrained_provenance(backbone, image_size):
    return PRETRAINED_REPORTS / f"{backbone}_{image_size}.json"


def keras_cache():
    """Where Keras caches downloads (datasets/, models/): $KERAS_HOME, else ~/.keras."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
