"""Bad input to predict (issues 21 and 25): odd files, special files, links, caps, unreadable
paths and damaged models. Each gets one `error:` line naming it, every other photo is still
classified, nothing prints a traceback, hangs or crashes. The runs are real processes under a
memory and time cap, so that a regression (reading /dev/zero whole, opening a FIFO) fails the
test instead of taking the machine down."""
import os
import resource
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from catsdogs import paths, predict
from conftest import ROOT
from test_bad_data import (animated_gif, bomb_png, corrupt_jpeg, gray16_png, image,
                           rgb16_png, truncated_jpeg)
from test_fetch_safety import without_root_override

pytestmark = pytest.mark.slow

MEMORY_CAP = 8 * 1024 ** 3  # address space: TensorFlow reserves ~2 GB; /dev/zero read whole: all
TIME_CAP = 300              # seconds; a FIFO opened would block forever
BYTE_CAP_MB = 0.05          # --max-file-mb for these runs: big.png is over it

LOOP = "not readable (Too many levels of symbolic links)"
DENIED = "not readable (Permission denied)"
GOOD = {  # decodable odd files, each classified: name in mixed/ -> what makes its bytes
    "good.jpg": image, "grayscale.jpg": lambda: image("L"), "cmyk.jpg": lambda: image("CMYK"),
    "rgba.png": lambda: image("RGBA", "PNG"), "gray16.png": gray16_png, "rgb16.png": rgb16_png,
    "animated.gif": animated_gif, "photo.bmp": lambda: image(fmt="BMP"),
    "été 🐕.png": lambda: image(fmt="PNG"),
    b"caf\xe9.jpg": image,     # not UTF-8: shown caf\xe9.jpg
    "new\nline.jpg": image}    # shown new\nline.jpg, on one line
SHOWN = {b"caf\xe9.jpg": "caf\\xe9.jpg", "new\nline.jpg": "new\\nline.jpg"}
BAD = {  # name in mixed/ -> (its bytes, what its error line says; None: TensorFlow's words)
    "empty.jpg": (b"", None), "text.jpg": (b"just text\n", "Unknown image file format"),
    "truncated.jpg": (truncated_jpeg(), None), "corrupt.jpg": (corrupt_jpeg(), None),
    "big.png": (image(fmt="PNG", size=(200, 200)), f"over --max-file-mb ({BYTE_CAP_MB:g})"),
    "bomb.png": (bomb_png(), "declares 10,000,000,000 pixels, over --max-pixels (40,000,000)")}


def run(command, cwd, preexec=None):
    """predict in a process of its own, capped; the project only on PYTHONPATH."""
    def capped():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        if preexec:
            preexec()
    return subprocess.run([sys.executable, "-m", "catsdogs.predict", *command], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=capped,
                          capture_output=True, timeout=TIME_CAP)


def error_lines(result):
    """stderr's `error:` lines, after checking it holds no traceback and ends with predict's
    summary line. (Other lines are the C++ libraries' own, which no setting silences in TF
    2.21: its start-up chatter, TFLite's XNNPACK note, libjpeg's "Corrupt JPEG data".)"""
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr and stderr.splitlines()[-1].startswith("predict: ")
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def artifact(exported_project, tmp_path_factory):
    folder = tmp_path_factory.mktemp("artifact") / "artifact"
    return shutil.copytree(exported_project / paths.EXPORT, folder)


def test_every_bad_file_gets_one_error_line_and_every_other_photo_its_class(artifact, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, make in GOOD.items():
        with open(os.path.join(os.fsencode(folder), os.fsencode(name)), "wb") as file:
            file.write(make())
    for name, (data, _) in BAD.items():
        (folder / name).write_bytes(data)
    (folder / ".hidden.jpg").write_text("never read: hidden")
    (folder / "notes.txt").write_text("never read: not an image by name")
    os.symlink("loop_b.jpg", folder / "loop_a.jpg")
    os.symlink("loop_a.jpg", folder / "loop_b.jpg")
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    (folder / "sub").mkdir()
    os.symlink("sub", folder / "folder.jpg")
    os.mkfifo(tmp_path / "fifo")
    os.symlink("loop", tmp_path / "loop")
    result = run(["mixed", "fifo", "/dev/zero", "missing.jpg", "loop", "--model", str(artifact),
                  "--max-file-mb", str(BYTE_CAP_MB)], cwd=tmp_path)
    assert result.returncode == 1
    expected = {f"mixed/{name}": reason for name, (_, reason) in BAD.items()}
    expected.update({"mixed/loop_a.jpg": LOOP, "mixed/loop_b.jpg": LOOP, "loop": LOOP,
                     "mixed/pipe.jpg": "not a regular file (a FIFO), not read",
                     "fifo": "not a regular file (a FIFO), not read",
                     "mixed/zero.jpg": "not a regular file (a character device), not read",
                     "/dev/zero": "not a regular file (a character device), not read",
                     "mixed/folder.jpg": "not a regular file (a folder), not read",
                     "missing.jpg": "not readable (No such file or directory)"})
    errors = dict(line.removeprefix("error: ").split(": ", 1) for line in error_lines(result))
    assert sorted(errors) == sorted(expected)
    for path, reason in expected.items():
        assert reason is None or reason in errors[path], path
    shown = [line.rsplit(": ", 1)[0] for line in result.stdout.decode().splitlines()]
    assert sorted(shown) == sorted(f"mixed/{SHOWN.get(name, name)}" for name in GOOD)


def test_unreadable_files_and_folders_get_an_error_line_and_the_rest_is_classified(artifact,
                                                                                    tmp_path):
    folder = tmp_path / "photos"
    (folder / "sealed").mkdir(parents=True)
    for name in ("a.jpg", "locked.jpg", "sealed/inside.jpg", "z.png"):
        (folder / name).write_bytes(image(fmt="PNG" if name.endswith(".png") else "JPEG"))
    preexec = without_root_override()
    (folder / "locked.jpg").chmod(0o000)
    (folder / "sealed").chmod(0o000)
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(folder / 'locked.jpg')!r})"],
                               preexec_fn=preexec, capture_output=True)
        if probe.returncode == 0:
            pytest.skip("running as root and unable to drop CAP_DAC_OVERRIDE: chmod 000 "
                        "does not block reads here")
        result = run(["photos", "--model", str(artifact)], cwd=tmp_path, preexec=preexec)
    finally:
        (folder / "sealed").chmod(0o755)
        (folder / "locked.jpg").chmod(0o644)
    assert result.returncode == 1
    assert error_lines(result) == [
        f"error: photos/locked.jpg: {DENIED}",
        "error: photos/sealed: folder not readable (Permission denied); nothing in it classified"]
    assert [line.split(": ")[0] for line in result.stdout.decode().splitlines()] == [
        "photos/a.jpg", "photos/z.png"]


def damaged_models(artifact, folder):
    """{model path given: what its error line says}, each a copy of artifact damaged one way."""
    def copy(name):
        return shutil.copytree(artifact, folder / name)
    cut = copy("cut_keras") / "model.keras"
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    half = copy("cut_tflite") / "model_float32.tflite"
    half.write_bytes(half.read_bytes()[:half.stat().st_size // 2])
    text = copy("text_tflite") / "model_int8.tflite"
    text.write_text("not a model")
    other = copy("other_tflite") / "model_float32.tflite"
    double = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None, 10])])
    other.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [double.get_concrete_function()], double).convert())
    no_serve = copy("no_serve") / "saved_model"
    shutil.rmtree(no_serve)
    module = tf.Module()
    module.other = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([None])])
    tf.saved_model.save(module, str(no_serve), signatures={"other": module.other})
    (copy("bad_json") / "classifier.json").write_text("{not json")
    alone = folder / "alone"
    alone.mkdir()
    shutil.copy(artifact / "model.keras", alone)
    return {cut: "a damaged .keras file", half: "not a readable model (",
            folder / "text_tflite" / "model_int8.tflite": "not a TFLite model (no TFL3",
            other: "takes (10,) images and gives 10 probabilities",
            no_serve: "a SavedModel without a `serve` endpoint (it has: other)",
            folder / "bad_json": "classifier.json: not a classifier description",
            alone / "model.keras": "no classifier.json beside the model",
            folder / "missing": "does not exist"}


def test_a_bad_model_gets_one_error_line_exit_2_and_no_crash(artifact, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image())
    for model, message in damaged_models(artifact, tmp_path).items():
        result = run([str(photo), "--model", str(model)], cwd=tmp_path)
        assert result.returncode == 2, (model, result.stderr)  # not -11, a segfault
        assert result.stdout == b"" and "Traceback" not in result.stderr.decode()
        lines = [line for line in result.stderr.decode().splitlines()
                 if line.startswith("error: ")]
        assert len(lines) == 1, result.stderr  # naming the model, or its folder
        assert lines[0].startswith((f"error: {model}", f"error: {model.parent}:")), lines
        assert message in lines[0], lines


def test_the_caps_are_flags_with_stated_defaults(capsys):
    with pytest.raises(SystemExit):
        predict.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--max-file-mb MAX_FILE_MB larger files are not read (default: 64)" in help_text
    assert "--max-pixels MAX_PIXELS images declaring more are not decoded (default: " \
           "40,000,000)" in help_text
