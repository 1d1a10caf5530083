"""Tests of studentnas.data.images and .readers: readers on hand-made files, real Fashion-MNIST, tensors."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studentnas.core.errors import BadInputError
from studentnas.data.images import (
    ImageSet,
    TensorImageDataset,
    calibration_batch,
    check_data_spec,
    describe_spec,
    load_images,
    stratified_indices,
    to_tensor,
)
from studentnas.data.readers import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------ helpers


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_fashion_mnist(directory: Path, n: int = 4) -> np.ndarray:
    """Four tiny IDX files; image i is filled with 10 * i + its split offset, label i % 10."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, offset in (("train", 0), ("t10k", 1)):
        images = np.stack([np.full((28, 28), 10 * i + offset, np.uint8) for i in range(n)])
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        labels = np.arange(n, dtype=np.uint8) % 10
        (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return images


def cifar_pixels(n: int, start: int) -> np.ndarray:
    """N x 3072 channel-major rows: red plane = start + i, green = 100 + i, blue = 200 + i."""
    rows = [np.concatenate([np.full(1024, v, np.uint8) for v in (start + i, 100 + i, 200 + i)]) for i in range(n)]
    return np.stack(rows)


def dump(path: Path, content: dict) -> None:
    path.write_bytes(pickle.dumps(content, protocol=2))


def write_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        batch = {b"batch_label": b"x", b"data": cifar_pixels(2, 10 * b), b"labels": [b, 9 - b]}
        dump(folder / f"data_batch_{b}", batch)
    dump(folder / "test_batch", {b"data": cifar_pixels(3, 0), b"labels": [7, 8, 9]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 10000})
    return folder


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    dump(folder / "train", {b"data": cifar_pixels(3, 50), b"fine_labels": [99, 0, 42], b"coarse_labels": [1, 2, 3]})
    dump(folder / "test", {b"data": cifar_pixels(1, 5), b"fine_labels": [3], b"coarse_labels": [0]})
    dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": []})
    return folder


def write_png(path: Path, color: tuple[int, int, int] | int, size: tuple[int, int] = (5, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L" if isinstance(color, int) else "RGB", size, color).save(path)


def balanced_set(per_class: int = 6, classes: int = 10) -> ImageSet:
    labels = np.repeat(np.arange(classes), per_class)
    images = np.arange(len(labels), dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 1), np.uint8)
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(classes)), "synthetic")


# ------------------------------------------------------------------------------------------- IDX + MNIST


def test_read_idx_parses_header_and_pixels_exactly(tmp_path: Path) -> None:
    pixels = np.array([[[0, 1, 2], [3, 4, 255]], [[9, 8, 7], [6, 5, 128]]], np.uint8)
    (tmp_path / "plain-idx3-ubyte").write_bytes(idx_bytes(pixels))
    (tmp_path / "packed-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pixels)))
    for name in ("plain-idx3-ubyte", "packed-idx3-ubyte.gz"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (2, 2, 3)
        assert got.tolist() == [[[0, 1, 2], [3, 4, 255]], [[9, 8, 7], [6, 5, 128]]]
    big_endian = np.array([1, -2, 70000], ">i4")
    (tmp_path / "ints-idx1-ubyte").write_bytes(idx_bytes(big_endian, 0x0C))
    assert read_idx(tmp_path / "ints-idx1-ubyte").tolist() == [1, -2, 70000]


def test_read_idx_rejects_bad_header_and_truncation(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(BadInputError, match="not an IDX file.*download the file again"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((4, 4), np.uint8))[:-3])
    with pytest.raises(BadInputError, match="promises"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_from_a_directory(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path / "fm")
    train = load_images(f"fashion-mnist:{tmp_path / 'fm'}")
    test = load_images(f"fashion-mnist:{tmp_path / 'fm'}", split="test")
    assert train.images.shape == (4, 28, 28, 1) and train.images[2, 5, 7, 0] == 20
    assert test.images[3, 0, 0, 0] == 31 and test.labels.tolist() == [0, 1, 2, 3]
    assert train.classes == FASHION_MNIST_CLASSES


def test_debian_fashion_mnist_test_split() -> None:
    files = sorted(p.name for p in FASHION_MNIST_DIR.glob("*.gz")) if FASHION_MNIST_DIR.is_dir() else []
    fix = "apt-get install dataset-fashion-mnist"
    assert len(files) == 4, f"Debian Fashion-MNIST missing in {FASHION_MNIST_DIR}: {fix}"
    check_data_spec("fashion-mnist")
    data = load_images("fashion-mnist", split="test")
    assert data.images.shape == (10000, 28, 28, 1) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"


def test_shipped_sample_is_a_fresh_pick_of_the_debian_test_split() -> None:
    sample = load_images(None)
    assert sample.images.shape == (320, 28, 28, 1) and sample.labels.dtype == np.int64
    assert np.bincount(sample.labels).tolist() == [32] * 10
    assert sample.classes == FASHION_MNIST_CLASSES
    fresh = load_images("fashion-mnist", split="test", limit=320, seed=0)
    assert np.array_equal(sample.images, fresh.images) and np.array_equal(sample.labels, fresh.labels)


# ----------------------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("use_parent", [True, False])
def test_cifar10_pixels_labels_and_channel_order(tmp_path: Path, use_parent: bool) -> None:
    folder = write_cifar10(tmp_path)
    spec = f"cifar10:{tmp_path if use_parent else folder}"
    check_data_spec(spec)
    train, test = load_images(spec), load_images(spec, split="test")
    assert train.images.shape == (10, 32, 32, 3)
    assert train.labels.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert train.images[1, 31, 0].tolist() == [11, 101, 201]  # batch 1, image 1: red 10 + 1, green, blue
    assert test.images[2, 4, 9].tolist() == [2, 102, 202] and test.labels.tolist() == [7, 8, 9]
    assert test.classes[0] == "airplane" and test.classes[9] == "truck"


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    train = load_images(f"cifar100:{tmp_path}")
    assert train.labels.tolist() == [99, 0, 42] and len(train.classes) == 100 and train.classes[42] == "c42"
    assert train.images[2, 0, 0].tolist() == [52, 102, 202]
    test = load_images(f"cifar100:{tmp_path / 'cifar-100-python'}", split="test")
    assert test.images[0, 5, 5].tolist() == [5, 100, 200] and test.labels.tolist() == [3]


def test_corrupt_or_missing_cifar_files(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(BadInputError, match=r"test_batch: not a readable CIFAR-10 pickle.*expected .*batches.meta"):
        load_images(f"cifar10:{tmp_path}", split="test")
    (folder / "data_batch_3").unlink()
    with pytest.raises(BadInputError, match=r"data_batch_3: file not found; expected"):
        check_data_spec(f"cifar10:{folder}")
    with pytest.raises(BadInputError, match=r"no python batches at .*cifar-100-python.*cs.toronto.edu"):
        load_images(f"cifar100:{tmp_path}")


def test_pickles_that_would_run_code_are_refused(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    dump(folder / "test_batch", {b"data": Path("x"), b"labels": [0]})
    with pytest.raises(BadInputError, match="refusing to load pathlib"):
        load_images(f"cifar10:{folder}", split="test")


# ---------------------------------------------------------------------------------------------- folders


def test_image_folder_classes_labels_and_resizing(tmp_path: Path) -> None:
    write_png(tmp_path / "dog" / "a.png", (200, 10, 20))
    write_png(tmp_path / "cat" / "x.png", (1, 2, 3))
    write_png(tmp_path / "cat" / "y.PNG", (4, 5, 6), size=(10, 8))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = load_images(str(tmp_path))
    assert data.classes == ("cat", "dog") and data.labels.tolist() == [0, 0, 1]
    assert data.images.shape == (3, 4, 5, 3) and data.images[1, 2, 3].tolist() == [4, 5, 6]
    assert data.images[2, 0, 0].tolist() == [200, 10, 20]


def test_image_folder_grayscale_and_split_folders(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "a" / "1.png", 10)
    write_png(tmp_path / "train" / "b" / "2.png", 20)
    write_png(tmp_path / "val" / "b" / "3.png", 30)
    train, test = load_images(str(tmp_path)), load_images(str(tmp_path), split="test")
    assert train.images.shape == (2, 4, 5, 1) and train.labels.tolist() == [0, 1]
    assert test.classes == ("a", "b") and test.labels.tolist() == [1] and test.images[0, 0, 0, 0] == 30


def test_image_folder_limit_is_stratified(tmp_path: Path) -> None:
    for c in range(3):
        for i in range(4):
            write_png(tmp_path / f"k{c}" / f"{i}.png", 10 * c + i)
    data = load_images(str(tmp_path), limit=6, seed=3)
    assert np.bincount(data.labels).tolist() == [2, 2, 2]
    assert np.array_equal(data.images, load_images(str(tmp_path), limit=6, seed=3).images)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "good.png", 1)
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(BadInputError, match=r"cannot read image .*broken.png.*delete or replace"):
        load_images(str(tmp_path))


# ------------------------------------------------------------------------------------------- bad inputs


def test_empty_folder_and_folder_without_classes(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"contains no images; expected .*/<class>/<image>.png"):
        check_data_spec(str(tmp_path))
    write_png(tmp_path / "loose.png", 1)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(BadInputError, match="contains no images; expected"):
        load_images(str(tmp_path))


def test_cifar_folder_given_as_image_folder_gets_a_hint(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(BadInputError, match=r"looks like CIFAR-10: use cifar10:"):
        load_images(str(tmp_path))


def test_missing_path_and_unknown_spec(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"apt-get install dataset-fashion-mnist.*fashion-mnist:DIR"):
        check_data_spec(f"fashion-mnist:{tmp_path / 'nowhere'}")
    with pytest.raises(BadInputError, match=r"not a known dataset name.*cifar10:PATH.*ImageFolder"):
        load_images(str(tmp_path / "nowhere"))
    with pytest.raises(BadInputError, match=r"did you mean 'cifar10'\?"):
        check_data_spec("cifar-10:/data")
    with pytest.raises(BadInputError, match=r"nothing after 'cifar100:'; write cifar100:PATH"):
        check_data_spec("cifar100:")
    with pytest.raises(BadInputError, match="split 'validation': must be one of train, test"):
        load_images(None, split="validation")
    assert describe_spec("bogus") == "unrecognised data spec 'bogus'"
    assert describe_spec("fashion-mnist") == f"Fashion-MNIST IDX files in {FASHION_MNIST_DIR}"


def test_batch_larger_than_the_data() -> None:
    with pytest.raises(BadInputError, match=r"only 60 images .*use --batch-size 60 or smaller"):
        calibration_batch(balanced_set(), 61, (1, 8, 8), (0.5,), (0.5,), seed=0)
    with pytest.raises(BadInputError, match="must be a positive integer"):
        calibration_batch(balanced_set(), 0, (1, 8, 8), (0.5,), (0.5,), seed=0)


# ----------------------------------------------------------------------------------------------- tensors


def test_calibration_batch_is_deterministic_and_stratified() -> None:
    data = load_images(None)
    x1, y1 = calibration_batch(data, 20, (3, 32, 32), MEAN, STD, seed=5)
    x2, y2 = calibration_batch(data, 20, (3, 32, 32), MEAN, STD, seed=5)
    x3, _ = calibration_batch(data, 20, (3, 32, 32), MEAN, STD, seed=6)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert x1.shape == (20, 3, 32, 32) and x1.dtype == torch.float32 and y1.dtype == torch.int64
    assert torch.bincount(y1).tolist() == [2] * 10
    assert torch.allclose(x1[:, 0] * STD[0] + MEAN[0], x1[:, 1] * STD[1] + MEAN[1], atol=1e-5)  # gray repeated


def test_stratified_indices_handles_unbalanced_classes() -> None:
    labels = np.array([0] * 5 + [1] * 1 + [2] * 2)
    picked = stratified_indices(labels, 6, seed=0)
    assert len(set(picked.tolist())) == 6 and np.bincount(labels[picked]).tolist() == [3, 1, 2]


def test_normalisation_by_hand() -> None:
    images = np.zeros((1, 2, 2, 3), np.uint8)
    images[0, 1, 0] = (51, 102, 255)
    x = to_tensor(images, (3, 2, 2), (0.5, 0.25, 0.0), (0.25, 0.5, 2.0))
    assert x[0, :, 1, 0].tolist() == pytest.approx([(0.2 - 0.5) / 0.25, (0.4 - 0.25) / 0.5, 1.0 / 2.0])
    gray = to_tensor(images, (1, 2, 2), (0.1, 0.2, 0.3), (0.5,))  # 3 -> 1 by luma, mean of the means
    luma = (0.299 * 51 + 0.587 * 102 + 0.114 * 255) / 255
    assert gray.shape == (1, 1, 2, 2) and gray[0, 0, 1, 0].item() == pytest.approx((luma - 0.2) / 0.5, abs=1e-6)
    flat = to_tensor(np.full((2, 28, 28, 1), 51, np.uint8), (3, 7, 7), (0.5,), (0.25,))  # antialiased downsize
    assert flat.shape == (2, 3, 7, 7) and torch.allclose(flat, torch.full_like(flat, -1.2), atol=1e-5)
    with pytest.raises(BadInputError, match=r"expected \(C, H, W\)"):
        to_tensor(images, (2, 8, 8), (0.5,), (0.5,))
    with pytest.raises(BadInputError, match="std > 0"):
        to_tensor(images, (3, 8, 8), (0.5,), (0.0,))


def test_tensor_dataset_plain_and_augmented() -> None:
    data = balanced_set()
    plain = TensorImageDataset(data, (3, 16, 16), MEAN, STD)
    x, y = plain[7]
    assert y == 1 and torch.equal(x, to_tensor(data.images[7:8], (3, 16, 16), MEAN, STD)[0])
    augmented = [TensorImageDataset(data, (3, 16, 16), MEAN, STD, True, torch.Generator().manual_seed(0)) for _ in "ab"]
    first = [augmented[0][i][0] for i in range(5)]
    assert all(torch.equal(a, augmented[1][i][0]) for i, a in enumerate(first)) and first[0].shape == (3, 16, 16)
