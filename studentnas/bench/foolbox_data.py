"""Twenty real CIFAR-10 and twenty real CIFAR-100 test images, read from the foolbox 3.3.4 wheel.

NB201's own datasets are not available offline. The foolbox wheel (MIT licence) ships the first 20
images of the CIFAR-10 and CIFAR-100 test sets as 32x32 RGB PNGs named
``foolbox/data/cifar10_<index>_<label>.png`` and ``foolbox/data/cifar100_<index>_<label>.png``
(labels: CIFAR-10 classes and CIFAR-100 fine labels). This module opens the wheel with
:mod:`zipfile` and decodes only those members: foolbox's code is never imported or installed.

The wheel is found in the cache directory (``$XDG_CACHE_HOME/studentnas/foolbox``, by default
``~/.cache/studentnas/foolbox``) or fetched there with ``pip download foolbox==3.3.4 --no-deps``.
A path to the wheel can be given instead (``--data foolbox-cifar10:/path/to/foolbox-3.3.4-py3-none-any.whl``).

Example:
    >>> import io, zipfile
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> with zipfile.ZipFile(buffer, "w") as z:
    ...     png = io.BytesIO(); Image.new("RGB", (32, 32)).save(png, "PNG")
    ...     z.writestr("foolbox/data/cifar10_00_3.png", png.getvalue())
    >>> data = read_foolbox_images("cifar10", buffer)
    >>> data.images.shape, data.labels.tolist(), data.classes[3]
    ((1, 32, 32, 3), [3], 'cat')
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from studentnas.core.errors import BadInputError
from studentnas.data.images import ImageSet

FOOLBOX_VERSION = "3.3.4"
# PyPI's file, for the record: sha256 11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb
WHEEL_NAME = f"foolbox-{FOOLBOX_VERSION}-py3-none-any.whl"
KINDS = ("cifar10", "cifar100")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)
CLASSES = {"cifar10": CIFAR10_CLASSES, "cifar100": CIFAR100_CLASSES}
NAME = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def default_cache_dir() -> Path:
    """Where the wheel is kept: ``$XDG_CACHE_HOME/studentnas/foolbox`` (``~/.cache/studentnas/foolbox``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "studentnas" / "foolbox"


def fetch_wheel(cache_dir: str | Path | None = None, timeout: float = 300) -> Path:
    """The foolbox 3.3.4 wheel in ``cache_dir``, downloaded there with pip if it is not there yet."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    wheel = cache / WHEEL_NAME
    if wheel.is_file():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", f"foolbox=={FOOLBOX_VERSION}", "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "-d", str(cache)]
    fix = (f"on a machine with network run `pip download foolbox=={FOOLBOX_VERSION} --no-deps -d DIR` and pass "
           f"--data foolbox-cifar10:DIR/{WHEEL_NAME}, or copy the wheel to {cache}")
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise BadInputError(f"downloading the foolbox {FOOLBOX_VERSION} wheel timed out after {timeout:.0f} s "
                            f"(is the package registry reachable?); {fix}") from err
    if proc.returncode != 0 or not wheel.is_file():
        said = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise BadInputError(f"could not download the foolbox {FOOLBOX_VERSION} wheel (pip said: {said}); {fix}")
    return wheel


def _member_pattern(kind: str) -> re.Pattern[str]:
    return re.compile(rf"foolbox/data/{kind}_(\d+)_(\d+)\.png")


def read_foolbox_images(kind: str, wheel: str | Path | IO[bytes]) -> ImageSet:
    """The ``kind`` (``cifar10`` or ``cifar100``) test images in the foolbox ``wheel``, in index order.

    Only the members ``foolbox/data/<kind>_<index>_<label>.png`` are read. Labels come from the
    member names; every image must be a 32x32 RGB PNG.
    """
    if kind not in KINDS:
        raise BadInputError(f"foolbox image set {kind!r} is not one of {', '.join(KINDS)}; use foolbox-cifar10")
    where = wheel if isinstance(wheel, (str, Path)) else "the given zip"
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as err:
        raise BadInputError(f"cannot open '{where}' as the foolbox {FOOLBOX_VERSION} wheel ({err}); pass the "
                            f"path of {WHEEL_NAME} (`pip download foolbox=={FOOLBOX_VERSION} --no-deps`)") from err
    pattern, classes = _member_pattern(kind), CLASSES[kind]
    with archive:
        members = sorted((int(m[1]), int(m[2]), m[0]) for name in archive.namelist()
                         if (m := pattern.fullmatch(name)))
        if not members:
            raise BadInputError(f"'{where}' has no foolbox/data/{kind}_<index>_<label>.png members; is it the "
                                f"foolbox {FOOLBOX_VERSION} wheel ({WHEEL_NAME})?")
        images, labels = [], []
        for _index, label, name in members:
            if label >= len(classes):
                raise BadInputError(f"'{where}' member {name}: label {label} is not a {NAME[kind]} class "
                                    f"(0..{len(classes) - 1}); the wheel is not foolbox {FOOLBOX_VERSION}")
            try:
                with Image.open(io.BytesIO(archive.read(name))) as img:
                    array = np.asarray(img.convert("RGB"), dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as err:
                raise BadInputError(f"'{where}' member {name} is not a readable PNG ({err}); re-download the "
                                    "wheel") from err
            if array.shape != (32, 32, 3):
                raise BadInputError(f"'{where}' member {name} is {array.shape[1]}x{array.shape[0]}, not a 32x32 "
                                    f"{NAME[kind]} image; the wheel is not foolbox {FOOLBOX_VERSION}")
            images.append(array)
            labels.append(label)
    digest = ""
    if isinstance(wheel, (str, Path)):
        digest = f", sha256 {hashlib.sha256(Path(wheel).read_bytes()).hexdigest()[:16]}"
    source = (f"{len(images)} real {NAME[kind]} test images (indices {members[0][0]}..{members[-1][0]}) from the "
              f"foolbox {FOOLBOX_VERSION} wheel (MIT) {where}{digest}")
    return ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64), classes, source)


def load_foolbox(spec: str, cache_dir: str | Path | None = None) -> ImageSet:
    """The images of a ``foolbox-cifar10[:WHEEL]`` or ``foolbox-cifar100[:WHEEL]`` data spec.

    Without ``:WHEEL`` the wheel comes from the cache (downloaded on first use).
    """
    head, colon, rest = spec.partition(":")
    kind = head.strip().lower().removeprefix("foolbox-")
    if not head.strip().lower().startswith("foolbox-") or kind not in KINDS:
        raise BadInputError(f"data spec {spec!r}: use foolbox-cifar10, foolbox-cifar100, or either with "
                            f":/path/to/{WHEEL_NAME}")
    if colon:
        wheel = Path(rest.strip()).expanduser()
        if not wheel.is_file():
            raise BadInputError(f"data spec {spec!r}: wheel '{wheel}' does not exist; download it with `pip download "
                                f"foolbox=={FOOLBOX_VERSION} --no-deps -d DIR` or drop ':PATH' to fetch it")
    else:
        wheel = fetch_wheel(cache_dir)
    return read_foolbox_images(kind, wheel)
