"""scripts/sign_language_digits.py on a tiny three-class dataset in the same layout (class
folders "0", "1", "2"): the zip it builds, the experiment's -S values as DVC applies them, the
linear probe on tiny decoded images, and the report from fabricated predictions. No DVC run:
that is the real experiment's (minutes, not seconds)."""
import importlib.util
import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from catsdogs import params as P
from conftest import ROOT, decode_files, write_image

spec = importlib.util.spec_from_file_location("sign_language_digits",
                                              ROOT / "scripts" / "sign_language_digits.py")
digits = importlib.util.module_from_spec(spec)
spec.loader.exec_module(digits)

CLASSES = ["0", "1", "2"]
TINTS = {"0": (200, 60, 60), "1": (60, 200, 60), "2": (60, 60, 200)}


def repository_layout(root, per_class=10, seed=0):
    """Dataset/<digit>/IMG_<n>.JPG as in the dataset's repository (plus a file that is no
    photo), written in an order that is not the sorted one."""
    rng = np.random.default_rng(seed)
    for digit, tint in TINTS.items():
        for n in rng.permutation(per_class):
            write_image(root / digit / f"IMG_{1000 + 10 * int(digit) + n:04d}.JPG", tint, rng)
        (root / digit / ".DS_Store").write_bytes(b"not a photo")
    return root


def test_zip_puts_the_first_80_percent_of_each_digit_by_name_in_train(tmp_path):
    dataset = repository_layout(tmp_path / "Dataset")
    digits.build_zip(dataset, tmp_path / "digits.zip")
    with zipfile.ZipFile(tmp_path / "digits.zip") as archive:
        names = archive.namelist()
        for digit in CLASSES:
            photos = sorted(p.name for p in (dataset / digit).glob("*.JPG"))
            assert [n.split("/")[-1] for n in names if n.split("/")[1:3] == ["train", digit]] \
                == photos[:8]
            assert [n.split("/")[-1] for n in names
                    if n.split("/")[1:3] == ["validation", digit]] == photos[8:]
            assert archive.read(f"sign_language_digits/train/{digit}/{photos[0]}") == \
                (dataset / digit / photos[0]).read_bytes()
    assert len(names) == 30  # no .DS_Store
    assert digits.zip_classes(tmp_path / "digits.zip") == CLASSES


def test_zip_classes_refuses_a_zip_whose_splits_differ(tmp_path):
    with zipfile.ZipFile(tmp_path / "odd.zip", "w") as archive:
        archive.writestr("d/train/0/a.jpg", b"x")
        archive.writestr("d/train/1/a.jpg", b"x")
        archive.writestr("d/validation/0/a.jpg", b"x")
    with pytest.raises(SystemExit, match="same classes"):
        digits.zip_classes(tmp_path / "odd.zip")


def test_the_experiment_changes_only_the_dataset(tmp_path):
    """The -S values through DVC's own override code (Hydra's syntax): digit names stay text,
    an awkward path survives, every other knob is params.yaml's."""
    from dvc.utils.hydra import apply_overrides
    zip_path = tmp_path / "a folder: #1" / "digits.zip"
    settings = digits.overrides(zip_path, CLASSES)
    command = digits.experiment_command("sign-language-digits", settings)
    assert command[:3] == ["dvc", "exp", "run"] and "--temp" in command
    assert command[-2:] == ["evaluate", "export"]
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "-S"] == settings
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(tmp_path / "params.yaml", settings)
    changed, committed = P.load(tmp_path / "params.yaml"), P.load(ROOT / "params.yaml")
    assert changed.classes == CLASSES
    assert changed.fetch.url is None and changed.fetch.path == str(zip_path)
    assert changed.validate_.min_images_per_class == digits.MIN_IMAGES_PER_CLASS
    assert changed.model_dump(exclude={"classes", "fetch", "validate_"}) == \
        committed.model_dump(exclude={"classes", "fetch", "validate_"})
    # -S from the command line replaces the script's own value of the same key
    assert digits.overrides(zip_path, CLASSES, ["validate.min_images_per_class=3"])[-1] == \
        "validate.min_images_per_class=3"


@pytest.mark.slow
def test_linear_probe_tells_tinted_classes_apart(tmp_path):
    """Frozen random-init MobileNetV2 features of tiny tinted images (the real run: ImageNet
    weights): the probe is a proper classifier, better than chance by far."""
    rng, files = np.random.default_rng(1), {}
    for split, count in (("train", 12), ("val", 4), ("test", 6)):
        for digit, tint in TINTS.items():
            for i in range(count):
                files.setdefault(split, []).append((tmp_path / split / digit / f"{i}.jpg", digit))
                write_image(files[split][-1][0], tint, rng)
    extractor = digits.feature_extractor("mobilenet_v2", 32, None)
    data = {split: (digits.features(extractor, decode_files([f for f, _ in rows], 32),
                                    batch_size=7),
                    np.array([int(d) for _, d in rows])) for split, rows in files.items()}
    assert data["train"][0].shape == (36, 1280)
    probabilities, on_val, c = digits.linear_probe(data["train"], data["val"], data["test"], 3)
    assert probabilities.shape == (18, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    assert set(on_val) == set(digits.C_GRID)  # C: the best on val, the smallest of a tie
    assert c == min(k for k, accuracy in on_val.items() if accuracy == max(on_val.values()))
    assert (probabilities.argmax(axis=1) == data["test"][1]).mean() >= 0.9
    with pytest.raises(SystemExit, match="not 0 to 3"):  # a class missing from train
        digits.linear_probe(data["train"], data["val"], data["test"], 4)


def fabricate(folder):
    """The three saved inputs of a report: 10 test images per class; the recipe calls two
    "2"s "1" and a "0" "2"; the baseline misses four; the probe six, one the recipe's."""
    labels = np.repeat([0, 1, 2], 10)
    calls = {"final": labels.copy(), "baseline": labels.copy(), "linear_probe": labels.copy()}
    calls["final"][[0, 20, 21]] = [2, 1, 1]
    calls["baseline"][[0, 1, 10, 20]] = [1, 2, 0, 0]
    calls["linear_probe"][[0, 1, 2, 20, 22, 23]] = [2, 2, 2, 1, 0, 0]
    frame = pd.DataFrame({"path": [f"data/raw/validation/{k}/IMG_{i}.JPG"
                                   for i, k in enumerate(np.repeat(CLASSES, 10))],
                          "class": np.repeat(CLASSES, 10), "label": labels})
    for name, said in calls.items():
        p = np.full((30, 3), 0.1)
        p[np.arange(30), said] = 0.8
        for k, digit in enumerate(CLASSES):
            frame[f"{name}_p_{digit}"] = p[:, k]
    folder.mkdir(parents=True)
    frame.to_csv(folder / "predictions.csv", index=False)
    p = P.load(ROOT / "params.yaml")
    (folder / "collected.json").write_text(json.dumps({
        "rev": "a" * 40, "classes": CLASSES,
        "params": p.model_dump(include={"model", "train", "augment", "baseline", "train_head",
                                        "finetune", "evaluate"}),
        "validate": {"images": 151, "accepted": 150, "quarantined": 1},
        "split": {"train_images": 96, "val_images": 24, "test_images": 30},
        "pretrained": {"file": "weights.h5", "loaded_by": "keras.applications"},
        "export": {"keras": 0.9, "tflite_int8": 0.875},
        "probe": {"features": 1280, "c": 0.1,
                  "val_accuracy_by_c": {"0.01": 0.5, "0.1": 0.9, "1": 0.9, "10": 0.8},
                  "seconds": 3}}))
    (folder / "experiment.json").write_text(json.dumps({
        "name": "sign-language-digits", "rev": "a" * 40, "command": "dvc exp run ...",
        "extra": [], "zip_sha256": "b" * 64, "wall_seconds": 754, "cpu_cores": 2,
        "load_average_at_end": 1.5}))
    return labels, calls


def test_report_from_saved_inputs(tmp_path):
    folder = tmp_path / "report"
    labels, calls = fabricate(folder)
    digits.report(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_images"] == 30
    for name, right in (("final", 27), ("baseline", 26), ("linear_probe", 24)):
        scores = metrics[name]
        assert scores["accuracy"] == pytest.approx(right / 30)
        assert scores["accuracy_low"] < scores["accuracy"] <= scores["accuracy_high"]
        assert scores["macro_f1"] == pytest.approx(f1_score(labels, calls[name],
                                                            average="macro"))
    assert metrics["final_vs_linear_probe"] | {"p_value": None} == {
        "only_final_right": 4, "only_linear_probe_right": 1, "p_value": None, "significant": False}
    assert metrics["final_vs_baseline"]["only_final_right"] == 2

    table = pd.read_csv(folder / "per_class.csv", dtype={"class": str})
    assert list(table["class"]) == CLASSES and list(table["images"]) == [10, 10, 10]
    assert list(table["final_recall"]) == [0.9, 1.0, 0.8]
    assert list(table["linear_probe_recall"]) == [0.7, 1.0, 0.7]
    assert (folder / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    readme = (folder / "README.md").read_text()
    pairs = readme.split("## Most confused pairs")[1]
    # The recipe's mistakes only (not the baseline's or the probe's), the most first.
    assert [line for line in pairs.split("![")[0].splitlines() if line.startswith("| ")] == [
        "| actual | called | test images | share of the actual class |",
        "| --- | ---: | ---: | ---: |", "| 2 | 1 | 2 | 20.0% |", "| 0 | 2 | 1 | 10.0% |"]
    assert "0.900 (" in readme and "12 min 34 s" in readme and "$" not in readme
    assert "only the recipe is right on 4, only the linear probe on 1: within noise" in readme
    assert "keras 0.900, tflite_int8 0.875" in readme

    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    digits.report(folder)  # regenerated from the same inputs: the same bytes
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_report_refuses_a_wall_time_of_another_run(tmp_path):
    folder = tmp_path / "report"
    fabricate(folder)
    experiment = json.loads((folder / "experiment.json").read_text())
    (folder / "experiment.json").write_text(json.dumps({**experiment, "rev": "c" * 40}))
    with pytest.raises(SystemExit, match="run `run` again"):
        digits.report(folder)
    assert not (folder / "metrics.json").exists()
