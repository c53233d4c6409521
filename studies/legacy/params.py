"""studies/legacy's knobs (params.yaml, section legacy) and where the study writes.

The core reads the section as plain data and leaves it alone; the study's stages check it
here, strictly, when they start, with messages like the core's ('legacy.<key>' ...).
"""
from typing import Annotated, Literal, Optional

from pydantic import Field, ValidationError, field_validator

from catsdogs import params, paths
from catsdogs.params import Epochs, Float, ParamError, Positive, Section, _describe

REPORTS = paths.REPORTS / "legacy"  # legacy.md, metrics.json, curves.png (readme_results reads it)
RUNS = REPORTS / "runs"         # <variant>/: dvclive folders, metrics, predictions

Preprocess = Literal["rescale", "backbone"]     # 1/255 (ImageDataGenerator) | preprocess_input
BatchNorm = Literal["batch_statistics", "frozen"]
Validation = Literal["augmented", "clean"]
VariantName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]  # a stage and folder name
Accuracy = Annotated[Float, Field(ge=0, le=1)]


class LegacySetup(Section):
    """The factors studies/legacy varies: input scaling, BatchNorm while training, Adam's
    learning rate (one-phase variants), validation images."""
    preprocess: Preprocess
    batchnorm: BatchNorm
    learning_rate: Positive
    validation: Validation


class RecipeChanges(Section):
    """What a recipe variant changes in old_setup (its learning rates are the phases' own)."""
    preprocess: Optional[Preprocess] = None
    batchnorm: Optional[BatchNorm] = None
    validation: Optional[Validation] = None


class Changes(RecipeChanges):
    """What a one-phase variant changes in old_setup; the factors not named stay."""
    learning_rate: Optional[Positive] = None


class Reported(Section):
    train_accuracy: Accuracy
    val_accuracy: Accuracy
    train_loss: Optional[Annotated[Float, Field(ge=0)]] = None
    val_loss: Optional[Annotated[Float, Field(ge=0)]] = None


class Legacy(Section):
    epochs: Epochs
    old_setup: LegacySetup
    variants: Annotated[dict[VariantName, Changes], Field(min_length=1)]
    recipe_variants: dict[VariantName, RecipeChanges]
    reported: dict[VariantName, Reported]

    @field_validator("variants")
    @classmethod
    def old_setup_is_the_reference(cls, variants):
        if "old_setup" not in variants or variants["old_setup"].model_dump(exclude_none=True):
            raise ValueError("must hold old_setup: {} (the reference every variant changes)")
        return variants

    @field_validator("recipe_variants", "reported")
    @classmethod
    def names_fit(cls, names, info):
        # Fields validate in order; one that failed is missing from info.data: no cascade.
        earlier = [info.data.get(field) for field in ("variants", "recipe_variants")]
        if info.field_name == "recipe_variants" and earlier[0] is not None:
            if shared := sorted(set(earlier[0]) & set(names)):
                raise ValueError(f"{shared} already in legacy.variants")
        if info.field_name == "reported" and None not in earlier:
            if unknown := sorted(set(names) - set(earlier[0]) - set(earlier[1])):
                raise ValueError(f"{unknown} are no variants")
        return names

    def changes(self, name):
        """The factors variant `name` changes, as {factor: value} (None: no such variant)."""
        changes = {**self.variants, **self.recipe_variants}.get(name)
        return None if changes is None else changes.model_dump(exclude_none=True)

    def setup(self, name):
        return self.old_setup.model_copy(update=self.changes(name))


def check(section):
    """The checked legacy section (params.yaml's legacy: as plain data); ParamError lists
    everything wrong, each key named from the top (legacy.variants...)."""
    if section is None:
        raise ParamError("params.yaml: 'legacy' is missing: studies/legacy's stages read "
                         "their old setup and variants there")
    try:
        return Legacy.model_validate(section)
    except ValidationError as error:
        raise ParamError("params.yaml: " + "; ".join(
            _describe({**item, "loc": ("legacy", *item["loc"])})
            for item in error.errors())) from None


def parse(raw):
    """(the core's checked params, the checked legacy section) of a params.yaml mapping."""
    p = params.parse(raw)
    if len(p.classes) != 2:
        raise ParamError(f"params.yaml: 'classes' = {p.classes!r}: studies/legacy reproduces "
                         f"a two-class setup (one sigmoid unit); run it with two classes")
    return p, check(p.legacy)


def load(path=paths.PARAMS):
    return parse(params.read(path))
