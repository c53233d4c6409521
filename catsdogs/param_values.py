"""What a knob's value may be, beyond its type: the checks params.py's schema runs on
folder names, URLs, paths and image formats, each raising ValueError with the reason."""
import re
import unicodedata
from urllib.parse import urlsplit

from PIL import Image


def distinct(items):
    if len(set(items)) != len(items):
        raise ValueError("items must be distinct")
    return items


def distinct_folders(names):
    # Folders that differ only in case are one folder on macOS's and Windows' file systems.
    seen = {}
    for name in names:
        if (first := seen.setdefault(name.casefold(), name)) != name:
            raise ValueError(f"{first!r} and {name!r} differ only in case: one folder on a "
                             f"case-insensitive file system (macOS, Windows); rename one")
    return names


def folder_name(name):
    # A class name is a folder name under data/raw/<split>/, a CSV value read back as text
    # and one line of the artifact's labels.txt: no control characters (newline, tab, ...).
    if name != name.strip() or name in (".", "..") or any(c in name for c in "/\\") or \
            any(unicodedata.category(c) == "Cc" for c in name):
        raise ValueError("must be a plain folder name: no /, \\ or control characters "
                         "(newline, tab, NUL), not . or .., no spaces at either end")
    if name == "images":  # reports/split/metrics.json: <split>_images beside <split>_<class>
        raise ValueError("'images' is taken: the split's metrics count <split>_images; "
                         "rename the folder")
    if len(name.encode()) > 255:
        raise ValueError("is longer than a folder name may be (255 bytes)")
    return name


def download_url(url):
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme.lower() not in ("http", "https"):  # schemes are case-insensitive (RFC 3986)
        raise ValueError("must be an http(s):// URL; a local folder or zip goes in fetch.path "
                         "(with fetch.url: null), where DVC tracks it")
    if not re.fullmatch(r"[\w.%+@=,-]+", name := download_name(url)) or not name.strip("."):
        raise ValueError(f"its path must end in a file name, the download's name in the Keras "
                         f"cache (letters, digits, . _ - + % @ = , and not . or ..), not {name!r}")
    return url


def download_name(url):
    """The download's file name in the Keras cache: the last segment of the URL's path."""
    return urlsplit(url).path.rpartition("/")[2]


def no_tilde(path):
    if path.startswith("~"):
        raise ValueError("DVC does not expand ~ (it would look for a folder named ~ in the "
                         "project): write the full path")
    return path


def pillow_format(name):
    Image.init()  # every plugin registers its name
    if name not in Image.OPEN:  # e.g. 'png' (Pillow's 'PNG') or 'jpg' (its 'JPEG')
        guess = Image.registered_extensions().get("." + name.lower(), name.upper())
        raise ValueError("is not a format Pillow opens; " + (
            f"Pillow calls it {guess!r}" if guess in Image.OPEN
            else f"Pillow's names are {', '.join(sorted(Image.OPEN))}"))
    return name
