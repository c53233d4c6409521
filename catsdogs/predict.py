"""Cat or dog for image files or folders, by the trained model or an export; run it in the
project folder (classes and threshold come from params.yaml). Images are decoded as the
pipeline decodes its own. An unreadable one gets an error line, and the exit status is 1."""
import argparse
import json
import re
import sys
from pathlib import Path

from catsdogs import params, paths

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}  # what decode_image reads, by name
DEFAULT_MODEL = paths.TFLITE_FLOAT32


def image_files(path):
    """A file as given; a folder's image files below it, sorted, hidden ones left out."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    return sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in f.relative_to(path).parts))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m catsdogs.predict",
                                     description="Cat or dog, for each image.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--model", default=str(DEFAULT_MODEL),
                        help=f".keras, SavedModel folder or .tflite (default: {DEFAULT_MODEL}; "
                             f"all of them from `make pipeline`)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON list: {path, class, p_<second class>} or {path, error}")
    args = parser.parse_args(argv)
    p = params.load()
    class_names = sorted(p.classes)  # label 1, what the model's probability is about: dogs
    probability_key = f"p_{class_names[1]}"
    if not Path(args.model).exists():
        print(f"error: {args.model} does not exist: `make pipeline` (stage export) writes it, "
              f"or name another with --model", file=sys.stderr)
        return 2
    # TensorFlow loads only now: --help and argument errors stay instant.
    import tensorflow as tf

    from catsdogs import serving
    from catsdogs.data import decode_image

    try:
        classifier = serving.load(args.model, p.export.tflite_threads)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def classify(path):
        try:
            image = decode_image(tf.io.read_file(str(path)), classifier.image_size)
        except tf.errors.OpError as error:
            # TensorFlow's message in one line, without the op and function names around it
            message = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:\w+\].*", "", error.message)
            return {"path": str(path), "error": " ".join(message.split()) or type(error).__name__}
        probability = float(classifier(image[None].numpy())[0])
        label = class_names[int(probability >= p.evaluate.threshold)]
        return {"path": str(path), "class": label, probability_key: probability}

    results = []
    for given in args.paths:
        files = image_files(given)
        no_images = {"path": given, "error": "a folder without image files "
                                             f"({', '.join(sorted(IMAGE_SUFFIXES))})"}
        for result in map(classify, files) if files else [no_images]:
            results.append(result)
            if "error" in result:
                print(f"error: {result['path']}: {result['error']}", file=sys.stderr)
            elif not args.json:  # flush: in order with the error lines
                print(f"{result['path']}: {result['class']} "
                      f"({probability_key} = {result[probability_key]:.3f})", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if any("error" in result for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
