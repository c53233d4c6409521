"""Stage pretrained with ImageNet weights from a Keras cache of the test's own: a good official
file is used as it is; a damaged one (truncated, another backbone's under this one's name, a
garbage converted file) stops the stage with one line naming the file and what to do, and
the weights written before stay as they were."""
import hashlib
import json
import os
import subprocess
import sys

import keras
import pytest

from catsdogs import paths
from catsdogs.models import BACKBONES
from conftest import ROOT

pytestmark = pytest.mark.slow

SIZE = 128  # a size both MobileNets have ImageNet weights for (the params check it)
OFFICIAL = BACKBONES["mobilenet_v2"].weights_file.format(size=SIZE)
CONVERTED = "mobilenet_v2_imagenet_notop.weights.h5"
OUTPUTS = [paths.pretrained_weights("mobilenet_v2", SIZE),
           paths.pretrained_provenance("mobilenet_v2", SIZE)]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """{backbone: bytes} of headless random-init MobileNets in Keras' official file format
    (legacy HDF5), as the cache holds them."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in ("mobilenet_v2", "mobilenet"):
        keras.utils.set_random_seed(0)
        BACKBONES[name].constructor(input_shape=(SIZE, SIZE, 3), include_top=False,
                                    weights=None).save(folder / f"{name}.h5")
        files[name] = (folder / f"{name}.h5").read_bytes()
    return files


def run_pretrained(work, cache):
    """python -m stages.pretrained mobilenet_v2 with KERAS_HOME=cache, every download refused
    at once (a proxy nobody listens on)."""
    proxy = "http://127.0.0.1:9"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_HOME": str(cache), "NO_PROXY": "",
           "no_proxy": "", **{name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY",
                                                       "http_proxy", "https_proxy")}}
    return subprocess.run([sys.executable, "-m", "stages.pretrained", "mobilenet_v2"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)


def test_damaged_weights_in_the_keras_cache_are_named_and_nothing_is_written(
        tmp_path, write_params, weight_files):
    work, models = tmp_path / "work", tmp_path / "keras_home" / "models"
    work.mkdir()
    models.mkdir(parents=True)
    write_params(work, model__weights="imagenet", model__image_size=SIZE)
    official, converted = models / OFFICIAL, models / CONVERTED

    # Control: the official file, whole, is what the stage uses.
    official.write_bytes(weight_files["mobilenet_v2"])
    result = run_pretrained(work, tmp_path / "keras_home")
    assert result.returncode == 0, result.stderr
    provenance = json.loads((work / OUTPUTS[1]).read_text())
    assert provenance["file"] == OFFICIAL and provenance["loaded_by"].startswith("keras.app")
    assert provenance["file_sha256"] == hashlib.sha256(official.read_bytes()).hexdigest()
    written = {path: (work / path).read_bytes() for path in OUTPUTS}

    whole = weight_files["mobilenet_v2"]
    for damage, file, problem, remedy in [
        ("truncated", whole[:len(whole) // 2], "Unable to synchronously open file (truncated "
         "file: eof = ", "delete it; Keras downloads it again"),
        ("mobilenet v1's", weight_files["mobilenet"], "Layer count mismatch when loading "
         "weights from file. Model expected ", "delete it; Keras downloads it again"),
        ("converted garbage", b"<html>502 Bad Gateway</html>\n", "Unable to synchronously "
         "open file (file signature not found)", "replace it (README, 'Offline weights')"),
    ]:
        official.unlink(missing_ok=True)
        target = converted if damage == "converted garbage" else official
        target.write_bytes(file)
        result = run_pretrained(work, tmp_path / "keras_home")
        message = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1, (damage, result.stderr)
        assert message.startswith(f"ImageNet weights for mobilenet_v2 at {SIZE}px: {target} is "
                                  f"damaged or not mobilenet_v2's ({problem}"), (damage, message)
        assert message.endswith(f"); {remedy}"), (damage, message)
        assert "Traceback" not in result.stderr, damage
        assert {path: (work / path).read_bytes() for path in OUTPUTS} == written, damage
        assert target.read_bytes() == file  # named, not deleted: the user decides
