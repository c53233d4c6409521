"""params.yaml, checked up front by a pydantic schema: every stage starts with `load()`, so a
bad value stops the run with one message (key, value, what is allowed) before heavy work."""
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError,
                      model_validator)
from ruamel.yaml import YAML, YAMLError

from catsdogs import paths
from catsdogs.param_values import (distinct, distinct_folders, download_url, folder_name,
                                   no_tilde, pillow_format)

# Layers of each headless backbone (tests check them against Keras): unfreeze_last's maximum.
BACKBONE_LAYERS = {"mobilenet_v2": 154, "mobilenet": 86, "efficientnet_b0": 237}
# Input sizes Keras has ImageNet weights for (absent: any size).
IMAGENET_SIZES = {"mobilenet_v2": (96, 128, 160, 192, 224), "mobilenet": (128, 160, 192, 224)}
# At most this many classes: past it the K x K confusion matrix and per-class tables are
# unreadable, and so long a list is more likely pasted by mistake than meant for this recipe.
MAX_CLASSES = 64


class ParamError(SystemExit):
    """A bad knob: the stage stops with the message alone, no traceback."""


Float = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[Float, Field(gt=0)]
Fraction = Annotated[Float, Field(ge=0, lt=1)]
# Upper bounds keep a typo from turning into hours of work or a disabled guard.
Epochs = Annotated[int, Field(ge=1, le=1000)]  # >= 1: a phase without one has no metrics
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy and pandas take 32-bit seeds
Megabytes = Annotated[Float, Field(gt=0, le=1_048_576)]  # up to 1 TiB
ClassName = Annotated[str, Field(min_length=1), AfterValidator(folder_name)]
Distinct = AfterValidator(distinct)
BackboneName = Literal["mobilenet_v2", "mobilenet", "efficientnet_b0"]


class Section(BaseModel):
    # strict: no silent "10" -> 10 or true -> 1; extra="forbid": a typo is an error, not a no-op.
    model_config = ConfigDict(strict=True, extra="forbid")


class Fetch(Section):
    # url (downloaded) or, when null, path: a fetch dependency either way, so DVC sees changes.
    url: Optional[Annotated[str, AfterValidator(download_url)]]
    path: Annotated[str, Field(min_length=1), AfterValidator(no_tilde)]
    sha256: Optional[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = None
    max_file_mb: Megabytes
    max_total_mb: Megabytes


class Validate(Section):
    # Pillow's format names (an MPO, a JPEG with more frames, counts as JPEG: stages/validate.py)
    formats: Annotated[list[Annotated[str, AfterValidator(pillow_format)]], Field(min_length=1),
                       Distinct]
    min_side_px: Annotated[int, Field(ge=1, le=4096)]
    max_aspect_ratio: Annotated[Float, Field(ge=1, le=100)]  # longer side / shorter side
    # At most Pillow's own decompression-bomb limit, which validate switches off for this one.
    max_pixels: Annotated[int, Field(ge=1, le=178_956_970)]
    min_images_per_class: Annotated[int, Field(ge=1, le=1_000_000)]
    near_duplicate_max_distance: Annotated[int, Field(ge=0, le=64)]  # of 64-bit dHashes
    same_picture_max_difference: Annotated[Float, Field(ge=0, le=255)]  # mean abs. pixel difference


class Split(Section):
    val_fraction: Annotated[Float, Field(gt=0, lt=1)]
    seed: Seed


class Model(Section):
    backbone: BackboneName
    weights: Optional[Literal["imagenet"]]
    image_size: Annotated[int, Field(ge=32, le=1024)]  # 3,000 images at 1024 px: 9 GiB decoded


class Train(Section):
    batch_size: Annotated[int, Field(ge=1, le=4096)]  # the global batch, whatever the devices
    seed: Seed
    distribute: Literal["none", "mirrored"]  # training.distribution
    class_weight: Optional[Literal["balanced"]]  # training.class_weights


class Augment(Section):
    rotation_degrees: Annotated[Float, Field(ge=0, le=180)]
    shift_fraction: Fraction
    horizontal_flip: bool


class Phase(Section):
    epochs: Epochs
    learning_rate: Positive


class TrainHead(Phase):
    dropout: Fraction


class Finetune(Phase):
    unfreeze_last: Annotated[int, Field(ge=1)]  # its maximum: Params.backbones_fit


class Evaluate(Section):
    threshold: Annotated[Float, Field(gt=0, lt=1)]
    val_accuracy_min: Annotated[Float, Field(ge=0, le=1)]
    train_accuracy_max: Annotated[Float, Field(ge=0, le=1)]
    misclassified_shown: Annotated[int, Field(ge=0, le=100)]  # one figure, a grid of them
    bootstrap_resamples: Annotated[int, Field(ge=100, le=100_000)]
    bootstrap_seed: Seed
    confidence: Annotated[Float, Field(gt=0, lt=1)]
    significance: Annotated[Float, Field(gt=0, lt=1)]


class Compare(Section):
    backbones: Annotated[list[BackboneName], Field(min_length=1), Distinct]


class Export(Section):
    batch_size: Annotated[int, Field(ge=1, le=4096)]
    representative_images: Annotated[int, Field(ge=1, le=100_000)]
    representative_seed: Seed
    latency_runs: Annotated[int, Field(ge=1, le=10_000)]
    tflite_threads: Optional[Annotated[int, Field(ge=1, le=256)]]  # None: one per CPU core
    int8_accuracy_drop_max: Annotated[Float, Field(ge=0, le=1)]
    int8_size_ratio_min: Annotated[Float, Field(gt=0)]


class Params(Section):
    # Folder names; their sorted order gives labels 0, 1, ... (two: one sigmoid unit; more:
    # a softmax over them).
    classes: Annotated[list[ClassName], Field(min_length=2, max_length=MAX_CLASSES), Distinct,
                       AfterValidator(distinct_folders)]
    fetch: Fetch
    validate_: Validate = Field(alias="validate")  # `validate` is a BaseModel method
    split: Split
    model: Model
    train: Train
    augment: Augment
    baseline: Phase
    train_head: TrainHead
    finetune: Finetune
    evaluate: Evaluate
    compare: Compare
    legacy: Optional[dict] = None  # checked by studies/legacy's stages (studies/legacy/params.py)
    export: Export

    @model_validator(mode="after")
    def backbones_fit(self):
        model, unfreeze, problems = self.model, self.finetune.unfreeze_last, []
        if model.backbone in self.compare.backbones:  # (runs once every section is valid)
            problems.append(f"compare.backbones lists model.backbone ({model.backbone}), which "
                            f"the train_head and finetune stages already train; list only the "
                            f"other backbones")
        for backbone in dict.fromkeys([model.backbone, *self.compare.backbones]):
            sizes, layers = IMAGENET_SIZES.get(backbone), BACKBONE_LAYERS[backbone]
            if model.weights == "imagenet" and sizes and model.image_size not in sizes:
                problems.append(f"model.image_size = {model.image_size}: {backbone} has ImageNet "
                                f"weights for sizes {', '.join(map(str, sizes))} only")
            if unfreeze > layers:
                problems.append(f"finetune.unfreeze_last = {unfreeze} is larger than "
                                f"{backbone}'s {layers} layers; use 1 to {layers}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _describe(item):
    key = ".".join(map(str, item["loc"]))  # loc names fields by alias: validate, not validate_
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] in ("int_type", "float_type") and isinstance(item["input"], str):
        message += " (quoted in YAML it is text: write it without quotes)"
    if item["type"] == "string_type" and not isinstance(item["input"], (dict, list)):
        message += (" (YAML reads true, false, null and numbers as no text: put the "
                    "value in quotes)")
    return {"missing": f"'{key}' is missing",
            "extra_forbidden": f"'{key}' is not a known key (a typo?)"}.get(
        item["type"], f"'{key}' = {item['input']!r}: {message}" if key else message)


def parse(raw):
    """The checked params of a params.yaml mapping; ParamError lists everything wrong."""
    if not isinstance(raw, dict):
        raise ParamError(f"params.yaml must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamError("params.yaml: " + "; ".join(map(_describe, error.errors()))) from None


def read(path=paths.PARAMS):
    """params.yaml as plain data, read as YAML 1.2 as DVC reads it (1e-05 is a number). A key
    given twice is an error (which one would win is a guess)."""
    path = Path(path)
    try:
        raw = YAML(typ="safe", pure=True).load(path)
    except FileNotFoundError:
        raise ParamError(f"{path} not found: run from the project root, where dvc.yaml "
                         f"and params.yaml are") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ParamError(f"{path}: cannot be read ({error})") from None
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ParamError(f"{path}{where}: {problem} (not valid YAML)") from None
    if raw is None:
        raise ParamError(f"{path} is empty: it must hold the sections "
                         f"{', '.join(Params.model_fields)}".replace("validate_", "validate"))
    return raw


def load(path=paths.PARAMS):
    return parse(read(path))
