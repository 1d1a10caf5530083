"""Regenerate ``studentnas/assets/fashion_mnist_calibration.npz`` from Debian's Fashion-MNIST files.

The sample is 320 images of the Fashion-MNIST TEST split, 32 per class, picked by
``studentnas.data.images.load_images("fashion-mnist", split="test", limit=320, seed=0)`` (stratified, deterministic).
Prints a JSON summary (path, size, counts per class, SHA-256 of the pixels).

Usage:
    python scripts/make_calibration_sample.py                      # Debian files, default output
    python scripts/make_calibration_sample.py --source DIR --out /tmp/sample.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from studentnas.data.images import load_images
from studentnas.data.readers import FASHION_MNIST_DIR, SAMPLE_FILE

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "studentnas" / "assets" / SAMPLE_FILE
SAMPLE_SIZE = 320
SEED = 0


def make_sample(source: Path, out: Path) -> dict:
    """Write the sample to ``out`` and return a summary of what was written."""
    data = load_images(f"fashion-mnist:{source}", split="test", limit=SAMPLE_SIZE, seed=SEED)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=data.images, labels=data.labels.astype(np.int64), classes=np.array(data.classes))
    return {
        "path": str(out),
        "bytes": out.stat().st_size,
        "images": list(data.images.shape),
        "per_class": dict(zip(data.classes, np.bincount(data.labels).tolist(), strict=True)),
        "source": data.source,
        "pixels_sha256": hashlib.sha256(data.images.tobytes()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=FASHION_MNIST_DIR, help="folder with the four .gz files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the .npz")
    args = parser.parse_args()
    print(json.dumps(make_sample(args.source, args.out), indent=2))


if __name__ == "__main__":
    main()
