"""Stage pretrained@<backbone>: the backbone's starting weights (ImageNet, or a seeded random
init) as a tracked file, so dvc.lock records which weights each result used."""
import hashlib
import json
import sys

import keras

from catsdogs import params, paths
from catsdogs.files import replaced
from catsdogs.reports import write_json
from catsdogs.models import BACKBONES, build_base, imagenet_base


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in BACKBONES:
        raise SystemExit(f"usage: python -m stages.pretrained BACKBONE  ({' | '.join(BACKBONES)})")
    backbone, p = sys.argv[1], params.load()
    image_size, seed = p.model.image_size, p.train.seed
    if p.model.weights == "imagenet":
        base, source_file = imagenet_base(backbone, image_size)
        # Keras checks only EfficientNet files' hashes: the sha256 tells which weights these are.
        keras_name = source_file.name == BACKBONES[backbone].weights_file.format(size=image_size)
        source = {"loaded_by": "keras.applications, weights='imagenet' (the file under Keras' "
                               "own name)" if keras_name else "load_weights (a converted file)",
                  "file": source_file.name,
                  "file_sha256": sha256(source_file) if source_file.is_file() else None}
    else:
        keras.utils.set_random_seed(seed)
        base, source = build_base(backbone, image_size, None), {"random_init_seed": seed}

    target = paths.pretrained_weights(backbone, image_size)
    with replaced(target) as partial:  # same name (Keras wants .weights.h5), in a temp folder
        base.save_weights(partial)
    provenance = {"backbone": backbone, "image_size": image_size, **source,
                  "layers": len(base.layers), "params": base.count_params(),
                  "weights_sha256": sha256(target)}
    write_json(paths.pretrained_provenance(backbone, image_size), provenance)
    print(f"pretrained@{backbone}: {json.dumps(source)} -> {target}")


if __name__ == "__main__":
    main()
