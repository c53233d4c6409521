"""The params schema: the committed params.yaml parses, and every rule stops a bad value
with one message naming the key, the offending value and what is allowed."""
import copy
import re

import pytest
import yaml

from catsdogs import params as P
from catsdogs.param_values import download_name
from conftest import ROOT, changed

COMMITTED = P.read(ROOT / "params.yaml")
BACKBONE_CHOICES = "'mobilenet_v2', 'mobilenet' or 'efficientnet_b0'"


def committed():
    return copy.deepcopy(COMMITTED)


def with_value(dotted, value):
    """The committed params with one key (section.key, or a top-level key) set to `value`."""
    return changed(committed(), **{dotted.replace(".", "__"): value})


def param_error(raw):
    with pytest.raises(P.ParamError) as error:
        P.parse(raw)
    return str(error.value)


def test_committed_params_parse():
    params = P.parse(committed())
    assert isinstance(params, P.Params)
    assert params.model.backbone == COMMITTED["model"]["backbone"]
    assert params.classes == COMMITTED["classes"] == ["cats", "dogs"]
    assert params.finetune.learning_rate == COMMITTED["finetune"]["learning_rate"]


def test_load_reads_params_yaml_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert P.load() == P.parse(committed())


# (key, bad value, what the message must say is allowed)
FIELD_RULES = [
    *[(f"{stage}.epochs", value, allowed)
      for stage in ("baseline", "train_head", "finetune")
      for value, allowed in ((0, "greater than or equal to 1"), (-1, "greater than or equal to 1"),
                             ("10", "valid integer"), (2.5, "valid integer"))],
    *[(f"{stage}.learning_rate", value, "greater than 0")
      for stage in ("train_head", "finetune", "baseline") for value in (0, -1e-3)],
    ("train_head.dropout", -0.1, "greater than or equal to 0"),
    ("train_head.dropout", 1.0, "less than 1"),
    ("split.val_fraction", 0, "greater than 0"),
    ("split.val_fraction", 1, "less than 1"),
    ("train.batch_size", 0, "greater than or equal to 1"),
    ("train.batch_size", True, "valid integer"),
    ("model.backbone", "resnet50", BACKBONE_CHOICES),
    ("model.image_size", 16, "greater than or equal to 32"),
    ("classes", ["cats"], "at least 2 items"),
    ("classes", [f"c{i}" for i in range(P.MAX_CLASSES + 1)], f"at most {P.MAX_CLASSES} items"),
    ("classes", ["cats", "cats"], "distinct"),
    ("train.class_weight", "balance", "'balanced'"),
    ("train.class_weight", True, "'balanced'"),
    ("compare.backbones", ["mobilenet", "mobilenet"], "distinct"),
    ("validate.max_aspect_ratio", 0.5, "greater than or equal to 1"),
]


@pytest.mark.parametrize("key, value, allowed", FIELD_RULES,
                         ids=[f"{key}={value!r}" for key, value, _ in FIELD_RULES])
def test_a_bad_value_is_refused_naming_key_value_and_what_is_allowed(key, value, allowed):
    message = param_error(with_value(key, value))
    assert f"'{key}' = {value!r}" in message
    assert allowed in message


def test_an_unknown_backbone_in_compare_is_refused():
    message = param_error(with_value("compare.backbones", ["mobilenet", "resnet50"]))
    assert "'compare.backbones.1' = 'resnet50'" in message
    assert BACKBONE_CHOICES in message


def test_the_committed_exponent_learning_rate_loads_as_a_float_as_dvc_reads_it():
    # The committed text: an exponent without a dot, which YAML 1.1 (PyYAML) reads as a
    # string and YAML 1.2 (ruamel, as DVC) as a number.
    text = (ROOT / "params.yaml").read_text()
    assert re.search(r"^finetune:.*\n(?:  .*\n)*?  learning_rate: 1e-05\b", text, re.MULTILINE)
    assert yaml.safe_load("learning_rate: 1e-05")["learning_rate"] == "1e-05"
    assert COMMITTED["finetune"]["learning_rate"] == 1e-05
    value = P.load(ROOT / "params.yaml").finetune.learning_rate
    assert isinstance(value, float) and value == 1e-05


@pytest.mark.parametrize("stage", ["train_head", "finetune", "baseline"])
def test_a_learning_rate_quoted_as_a_string_is_refused(tmp_path, stage):
    text = re.sub(rf"(?m)^({stage}:.*\n(?:  .*\n)*?  learning_rate: )\S+", r"\g<1>'1e-05'",
                  (ROOT / "params.yaml").read_text())
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert P.read(path)[stage]["learning_rate"] == "1e-05"   # the edit hit the right key
    with pytest.raises(P.ParamError) as error:
        P.load(path)
    assert f"'{stage}.learning_rate' = '1e-05'" in str(error.value)
    assert "valid number" in str(error.value)


def test_a_learning_rate_string_that_is_no_number_is_refused():
    message = param_error(with_value("finetune.learning_rate", "fast"))
    assert "'finetune.learning_rate' = 'fast'" in message and "valid number" in message


def test_no_dropout_is_allowed():
    assert P.parse(with_value("train_head.dropout", 0.0)).train_head.dropout == 0.0


def test_compare_may_not_list_the_main_backbone():
    raw = committed()
    raw["compare"]["backbones"] = ["mobilenet", raw["model"]["backbone"]]
    message = param_error(raw)
    assert "compare.backbones" in message and "model.backbone" in message
    assert f"({raw['model']['backbone']})" in message
    assert "only the other backbones" in message


@pytest.mark.parametrize("main, compare", [
    ("mobilenet", ["efficientnet_b0"]),      # the main backbone is the smaller one
    ("efficientnet_b0", ["mobilenet"]),      # a compared backbone is the smaller one
], ids=["model.backbone", "compare.backbones"])
def test_unfreeze_last_cannot_exceed_the_layers_of_any_trained_backbone(main, compare):
    raw = committed()
    raw["model"]["backbone"], raw["compare"]["backbones"] = main, compare
    small = min([main, *compare], key=P.BACKBONE_LAYERS.get)
    layers = P.BACKBONE_LAYERS[small]
    raw["finetune"]["unfreeze_last"] = layers  # the whole smaller backbone: allowed
    assert P.parse(raw).finetune.unfreeze_last == layers
    raw["finetune"]["unfreeze_last"] = layers + 1
    message = param_error(raw)
    assert f"finetune.unfreeze_last = {layers + 1}" in message
    assert f"{small}'s {layers} layers" in message
    assert f"1 to {layers}" in message


def test_a_typo_in_a_section_is_an_unknown_key():
    raw = committed()
    raw["train_head"]["learnig_rate"] = 0.01
    message = param_error(raw)
    assert "'train_head.learnig_rate' is not a known key" in message


def test_an_unknown_section_is_refused():
    raw = committed()
    raw["finetuning"] = {"epochs": 3}
    assert "'finetuning' is not a known key" in param_error(raw)


def test_a_missing_section_is_named():
    raw = committed()
    del raw["evaluate"]
    assert "'evaluate' is missing" in param_error(raw)


def test_a_missing_key_is_named():
    raw = committed()
    del raw["split"]["seed"]
    assert "'split.seed' is missing" in param_error(raw)


@pytest.mark.parametrize("text, kind", [("- fetch\n- split\n", "list"), ("42\n", "int"),
                                        ("just words\n", "str")])
def test_params_yaml_must_be_a_mapping(tmp_path, text, kind):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(P.ParamError, match=f"must be a mapping of sections, got {kind}"):
        P.load(path)


def test_an_empty_params_yaml_names_every_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(P.ParamError, match="params.yaml is empty: it must hold the sections "
                                           + ", ".join(COMMITTED)):
        P.load(path)


def test_a_missing_params_yaml_says_where_to_run(tmp_path):
    with pytest.raises(P.ParamError, match="params.yaml not found: run from the project root"):
        P.load(tmp_path / "params.yaml")


@pytest.mark.parametrize("text, where, problem", [
    ("classes: [cats, dogs]\nsplit:\n  seed: 1\n  seed: 2\n", "line 4, column 3",
     'found duplicate key "seed"'),
    ("classes: [cats, dogs]\nclasses: [a, b]\n", "line 2, column 1",
     'found duplicate key "classes"'),
    ("classes: [cats, dogs\nsplit: {}\n", "", "not valid YAML"),
    ("split:\n\tseed: 1\n", "line 2", "not valid YAML"),
])
def test_duplicate_keys_and_yaml_syntax_errors_are_one_message_with_the_line(
        tmp_path, text, where, problem):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(P.ParamError) as error:
        P.load(path)
    message = str(error.value)
    assert message.startswith(str(path)) and where in message and problem in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("key, value, allowed", [
    ("model__image_size", 100_000, "less than or equal to 1024"),
    ("validate__max_pixels", 10**12, "less than or equal to 178956970"),
    ("split__seed", 2**32, "less than or equal to 4294967295"),
    ("train__seed", -1, "greater than or equal to 0"),
    ("train_head__epochs", 10**6, "less than or equal to 1000"),
    ("train__batch_size", 10**6, "less than or equal to 4096"),
    ("fetch__max_total_mb", 10**9, "less than or equal to 1048576"),
    ("validate__max_aspect_ratio", 1000, "less than or equal to 100"),
])
def test_values_past_an_upper_bound_are_refused(key, value, allowed):
    section, name = key.split("__")
    raw = committed()
    raw[section][name] = value
    assert allowed in param_error(raw)


@pytest.mark.parametrize("key, value", [("train__seed", "42"), ("finetune__learning_rate", "1e-05"),
                                        ("split__val_fraction", "0.2")])
def test_a_quoted_number_is_refused_saying_to_drop_the_quotes(key, value):
    section, name = key.split("__")
    raw = committed()
    raw[section][name] = value
    assert "write it without quotes" in param_error(raw)


@pytest.mark.parametrize("classes, problem", [
    (["", "dogs"], "at least 1 character"),
    ([".", "dogs"], "must be a plain folder name"),
    (["..", "dogs"], "must be a plain folder name"),
    (["../x", "dogs"], "must be a plain folder name"),
    (["a/b", "dogs"], "must be a plain folder name"),
    (["cats ", "dogs"], "must be a plain folder name"),
    (["big\ncats", "dogs"], "control characters"),     # labels.txt holds one name per line
    (["cats\tbig", "dogs"], "control characters"),
    (["cats\x00", "dogs"], "control characters"),
    (["cats\x7f", "dogs"], "control characters"),
    (["images", "dogs"], "'images' is taken"),
    (["x" * 256, "dogs"], "longer than a folder name may be"),
    ([True, "dogs"], "put the value in quotes"),
    ([1, "dogs"], "put the value in quotes"),
    ([None, "dogs"], "put the value in quotes"),
])
def test_a_class_name_that_is_no_plain_folder_name_or_no_text_is_refused(classes, problem):
    raw = committed()
    raw["classes"] = classes
    assert problem in param_error(raw)


@pytest.mark.parametrize("classes", [["True", "NA"], ["1", "007"], ["null", "nan"],
                                     ["chats été", "chiens"]])
def test_class_names_that_look_like_other_things_are_accepted_as_text(classes):
    raw = committed()
    raw["classes"] = classes
    assert P.parse(raw).classes == classes


@pytest.mark.parametrize("count", [2, 3, 10, P.MAX_CLASSES])
def test_two_to_max_classes_are_accepted(count):
    raw = committed()
    raw["classes"] = [f"class {i}" for i in range(count)]
    assert P.parse(raw).classes == raw["classes"]


@pytest.mark.parametrize("classes, first, second", [
    (["Cats", "dogs", "cats"], "Cats", "cats"),
    (["straße", "dogs", "STRASSE"], "straße", "STRASSE"),   # casefold, not lower()
])
def test_class_names_that_differ_only_in_case_are_refused_naming_both(classes, first, second):
    raw = committed()
    raw["classes"] = classes
    message = param_error(raw)
    assert f"{first!r} and {second!r} differ only in case" in message
    assert message.count("differ only in case") == 1 and "\n" not in message


def test_class_weight_is_required_and_off_in_the_committed_params():
    assert P.parse(committed()).train.class_weight is None
    assert P.parse(with_value("train.class_weight", "balanced")).train.class_weight == "balanced"
    raw = committed()
    del raw["train"]["class_weight"]
    assert "'train.class_weight' is missing" in param_error(raw)


def test_yaml_keywords_as_class_names_need_quotes_and_then_stay_text(tmp_path):
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text().replace("classes: [cats, dogs]", "classes: [true, 7]")
    path.write_text(text)
    with pytest.raises(P.ParamError, match="put the value in quotes"):
        P.load(path)
    path.write_text(text.replace("[true, 7]", "['true', '7']"))
    assert P.load(path).classes == ["true", "7"]


def test_several_errors_are_listed_in_one_message():
    raw = committed()
    raw["baseline"]["epochs"] = 0
    raw["train_head"]["dropout"] = 1.0
    raw["model"]["backbone"] = "resnet50"
    raw["train"]["batchsize"] = raw["train"].pop("batch_size")
    del raw["split"]["seed"]
    message = param_error(raw)
    expected = ["'baseline.epochs' = 0", "'train_head.dropout' = 1.0", "'model.backbone' = 'resnet50'",
                "'train.batchsize' is not a known key", "'train.batch_size' is missing",
                "'split.seed' is missing"]
    for part in expected:
        assert part in message
    assert message.count("; ") == len(expected) - 1, message


def test_every_cross_section_problem_is_listed_in_one_message():
    raw = committed()
    raw["model"]["backbone"] = "mobilenet_v2"                  # 154 layers
    raw["compare"]["backbones"] = ["mobilenet", "mobilenet_v2"]  # 86 layers; and the main one
    raw["finetune"]["unfreeze_last"] = 200
    message = param_error(raw)
    assert "only the other backbones" in message
    assert "mobilenet's 86 layers" in message
    assert "mobilenet_v2's 154 layers" in message


def test_a_stage_stops_on_bad_params_before_touching_data(tmp_path, monkeypatch):
    import stages.split
    import stages.train_head

    monkeypatch.chdir(tmp_path)
    # Control: with good params, both stages get past the check and fail on the missing data
    # (so a ParamError below can only come from the params check).
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(committed()))
    with pytest.raises(SystemExit, match="manifest.csv is missing"):  # not a ParamError
        stages.split.main()
    with pytest.raises(FileNotFoundError):
        stages.train_head.main()

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_value("train_head.epochs", 0)))
    before = sorted(tmp_path.rglob("*"))
    for stage in (stages.train_head, stages.split):
        with pytest.raises(P.ParamError, match=r"'train_head\.epochs' = 0"):
            stage.main()
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_imagenet_weights_need_a_size_keras_has_them_for():
    raw = committed()
    raw["model"]["image_size"] = 150
    message = param_error(raw)
    assert "model.image_size = 150" in message and "mobilenet_v2" in message
    assert "160" in message
    raw["model"]["weights"] = None  # random weights: any size
    P.parse(raw)


@pytest.mark.parametrize("formats, key, problem", [
    (["JPEG", "png"], "'validate.formats.1' = 'png'", "Pillow calls it 'PNG'"),  # upper case
    (["jpg"], "'validate.formats.0' = 'jpg'", "Pillow calls it 'JPEG'"),  # an extension
    (["tif", "PNG"], "'validate.formats.0' = 'tif'", "Pillow calls it 'TIFF'"),
    (["JPEG", "HEIC"], "'validate.formats.1' = 'HEIC'", "Pillow's names are AVIF, BLP, BMP"),
])
def test_image_formats_must_be_names_pillow_opens(formats, key, problem):
    message = param_error(with_value("validate.formats", formats))
    assert f"{key}: is not a format Pillow opens; {problem}" in message
    assert message.count("validate.formats") == 1 and "\n" not in message


def test_pillows_own_format_names_are_accepted():
    formats = ["JPEG", "PNG", "WEBP", "TIFF", "GIF"]
    assert P.parse(with_value("validate.formats", formats)).validate_.formats == formats


@pytest.mark.parametrize("path", ["~/datasets/pets.zip", "~", "~alice/pets"])
def test_a_fetch_path_starting_with_a_tilde_is_refused(path):
    # DVC reads ${fetch.path} as it is written: ~ would be a folder named ~ in the project.
    assert param_error(with_value("fetch.path", path)) == (
        f"params.yaml: 'fetch.path' = {path!r}: DVC does not expand ~ (it would look for a "
        f"folder named ~ in the project): write the full path")
    assert P.parse(with_value("fetch.path", "/home/alice/pets.zip")).fetch.path  # a full path


@pytest.mark.parametrize("url, name", [
    ("https://example.com/data/", ""),            # the old rule took the host's "data"
    ("https://example.com", ""),
    ("https://example.com/..", ".."),             # the Keras cache folder itself
    ("https://example.com/data/.", "."),
    ("https://example.com/my pets.zip", "my pets.zip"),
    ("https://example.com/a\\b.zip", "a\\b.zip"),
    ("https://example.com/pets\x00.zip", "pets\x00.zip"),
    ("https://example.com/c:pets.zip", "c:pets.zip"),  # a drive on Windows
])
def test_a_url_whose_path_ends_in_no_plain_file_name_is_refused(url, name):
    message = param_error(with_value("fetch.url", url))
    assert message == (f"params.yaml: 'fetch.url' = {url!r}: its path must end in a file name, "
                       f"the download's name in the Keras cache (letters, digits, . _ - + % @ = "
                       f", and not . or ..), not {name!r}")


@pytest.mark.parametrize("url, name", [
    (COMMITTED["fetch"]["url"], "cats_and_dogs_filtered.zip"),
    ("https://example.com/get/pets.zip?token=s3cr3t&x=1#part", "pets.zip"),  # no query
    ("HTTP://example.com/v1.2/pets-2024_final%20cut.tar.gz", "pets-2024_final%20cut.tar.gz"),
])
def test_the_keras_cache_name_is_the_last_segment_of_the_urls_path(url, name):
    assert P.parse(with_value("fetch.url", url)).fetch.url == url
    assert download_name(url) == name
