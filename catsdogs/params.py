"""params.yaml is the single source of knobs; a pydantic schema checks all of it up front.

Every stage starts with `load()`, so a bad value anywhere stops the run with one message
naming the key, the value and what is allowed, before any heavy work.
"""
from typing import Annotated, Literal, Optional

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      ValidationError, model_validator)

PARAMS_FILE = "params.yaml"

# Layers of each headless keras.applications backbone (tests check these against Keras);
# finetune.unfreeze_last cannot exceed them.
BACKBONE_LAYERS = {"mobilenet_v2": 154, "mobilenet": 86, "efficientnet_b0": 237}
# Input sizes Keras has ImageNet weights for (absent: any size).
IMAGENET_SIZES = {"mobilenet_v2": (96, 128, 160, 192, 224), "mobilenet": (128, 160, 192, 224)}
BackboneName = Literal["mobilenet_v2", "mobilenet", "efficientnet_b0"]


class ParamError(SystemExit):
    """A knob in params.yaml is missing, of the wrong type or out of range.

    A SystemExit: the stage stops with the message alone, no traceback.
    """


def _yaml_float(value):
    # YAML 1.1 reads 1e-5 as a string; a float knob written that way is still a float.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


Float = Annotated[float, BeforeValidator(_yaml_float), Field(allow_inf_nan=False)]
Epochs = Annotated[int, Field(ge=1)]  # a phase without an epoch has no metrics to report
LearningRate = Annotated[Float, Field(gt=0)]
Seed = Annotated[int, Field(ge=0)]


def _distinct(items):
    if len(set(items)) != len(items):
        raise ValueError("items must be distinct")
    return items


Distinct = AfterValidator(_distinct)


class Section(BaseModel):
    # strict: no silent "10" -> 10 or true -> 1; extra="forbid": a typo is an error, not a no-op.
    model_config = ConfigDict(strict=True, extra="forbid")


class Fetch(Section):
    source: str = Field(min_length=1)
    sha256: Optional[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = None
    max_file_mb: Annotated[Float, Field(gt=0)]
    max_total_mb: Annotated[Float, Field(gt=0)]


class Validate(Section):
    classes: Annotated[list[str], Field(min_length=2, max_length=2), Distinct]
    formats: Annotated[list[str], Field(min_length=1)]
    min_side_px: Annotated[int, Field(ge=1)]
    max_pixels: Annotated[int, Field(ge=1)]
    min_images_per_class: Annotated[int, Field(ge=1)]


class Split(Section):
    val_fraction: Annotated[Float, Field(gt=0, lt=1)]
    seed: Seed


class Model(Section):
    backbone: BackboneName
    weights: Optional[Literal["imagenet"]]
    image_size: Annotated[int, Field(ge=32)]


class Train(Section):
    batch_size: Annotated[int, Field(ge=1)]
    seed: Seed


class Augment(Section):
    rotation_degrees: Annotated[Float, Field(ge=0, le=180)]
    shift_fraction: Annotated[Float, Field(ge=0, lt=1)]
    horizontal_flip: bool


class Baseline(Section):
    epochs: Epochs
    learning_rate: LearningRate


class TrainHead(Section):
    epochs: Epochs
    learning_rate: LearningRate
    dropout: Annotated[Float, Field(ge=0, lt=1)]
    feature_views: Annotated[int, Field(ge=0)]


class Finetune(Section):
    epochs: Epochs
    learning_rate: LearningRate
    unfreeze_last: Annotated[int, Field(ge=1)]


class Evaluate(Section):
    threshold: Annotated[Float, Field(gt=0, lt=1)]
    val_accuracy_min: Annotated[Float, Field(ge=0, le=1)]
    train_accuracy_max: Annotated[Float, Field(ge=0, le=1)]
    misclassified_shown: Annotated[int, Field(ge=0)]


class Compare(Section):
    backbones: Annotated[list[BackboneName], Field(min_length=1), Distinct]


class Params(Section):
    fetch: Fetch
    validate_: Validate = Field(alias="validate")  # `validate` is a BaseModel method
    split: Split
    model: Model
    train: Train
    augment: Augment
    baseline: Baseline
    train_head: TrainHead
    finetune: Finetune
    evaluate: Evaluate
    compare: Compare

    @model_validator(mode="after")
    def backbones_fit(self):
        # Runs only once every section is valid on its own (pydantic's order).
        problems = []
        if self.model.backbone in self.compare.backbones:
            problems.append(
                f"compare.backbones lists model.backbone ({self.model.backbone}), which the "
                f"train_head and finetune stages already train; list only the other backbones")
        for backbone in dict.fromkeys([self.model.backbone, *self.compare.backbones]):
            sizes = IMAGENET_SIZES.get(backbone)
            if self.model.weights == "imagenet" and sizes and self.model.image_size not in sizes:
                problems.append(
                    f"model.image_size = {self.model.image_size}: {backbone} has ImageNet "
                    f"weights for sizes {', '.join(map(str, sizes))} only")
            if self.finetune.unfreeze_last > BACKBONE_LAYERS[backbone]:
                problems.append(
                    f"finetune.unfreeze_last = {self.finetune.unfreeze_last} is larger than "
                    f"{backbone}'s {BACKBONE_LAYERS[backbone]} layers; use 1 to "
                    f"{BACKBONE_LAYERS[backbone]}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _describe(error):
    lines = []
    for item in error.errors():
        key = ".".join("validate" if part == "validate_" else str(part) for part in item["loc"])
        if item["type"] == "missing":
            lines.append(f"'{key}' is missing")
        elif item["type"] == "extra_forbidden":
            lines.append(f"'{key}' is not a known key (a typo?)")
        elif not key:
            lines.append(item["msg"].removeprefix("Value error, "))
        else:
            lines.append(f"'{key}' = {item['input']!r}: {item['msg'].removeprefix('Value error, ')}")
    return "params.yaml: " + "; ".join(lines)


def parse(raw):
    """The checked params of a params.yaml mapping; ParamError lists everything wrong."""
    if not isinstance(raw, dict):
        raise ParamError(f"params.yaml must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamError(_describe(error)) from None


def load(path=PARAMS_FILE):
    with open(path) as f:
        return parse(yaml.safe_load(f) or {})
