import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from flowgen.errors import DataError
from flowgen.vision.data import (
    CLASS_NAMES,
    FashionMNIST,
    ImageDataset,
    ImageFolder,
    read_idx,
    to_pixels,
)

from .conftest import REAL_FMNIST, idx_bytes, write_fmnist


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_values_labels_shapes(tmp_path, gz):
    images, labels = write_fmnist(tmp_path, "test", n=7, gz=gz)
    ds = FashionMNIST(tmp_path, "test")
    assert isinstance(ds, ImageDataset)
    assert len(ds) == 7 and ds.class_names == CLASS_NAMES and len(CLASS_NAMES) == 10
    assert ds.pixels.shape == (7, 1, 28, 28) and ds.pixels.dtype == torch.uint8
    np.testing.assert_array_equal(ds.pixels[:, 0].numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), labels.astype(np.int64))
    image, label = ds[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert label == int(labels[3])
    torch.testing.assert_close(image[0], torch.from_numpy(images[3]).float() / 127.5 - 1)
    assert image.min() >= -1 and image.max() <= 1
    batch, batch_labels = ds.batch([5, 0, 5])
    assert batch.shape == (3, 1, 28, 28) and batch_labels.tolist() == [labels[i] for i in (5, 0, 5)]
    torch.testing.assert_close(batch[1], ds[0][0])
    assert torch.equal(to_pixels(batch)[:, 0], torch.from_numpy(images[[5, 0, 5]]))


def test_extreme_pixels_map_to_unit_range(tmp_path):
    write_fmnist(tmp_path, "train", n=2)
    ds = FashionMNIST(tmp_path, "train")
    ds.pixels[0] = 0
    ds.pixels[1] = 255
    images, _ = ds.batch([0, 1])
    assert images[0].eq(-1).all() and images[1].eq(1).all()


def test_missing_folder_or_file_says_what_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(tmp_path / "nowhere")
    write_fmnist(tmp_path, "train")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*apt-get install"):
        FashionMNIST(tmp_path, "test")
    with pytest.raises(DataError, match="split"):
        FashionMNIST(tmp_path, "val")


def test_bad_magic_truncated_and_mismatched_files(tmp_path):
    write_fmnist(tmp_path, "train", n=5)
    images_file = tmp_path / "train-images-idx3-ubyte.gz"
    labels_file = tmp_path / "train-labels-idx1-ubyte.gz"
    good_images = images_file.read_bytes()

    # labels file where the images file should be: wrong magic number
    images_file.write_bytes(labels_file.read_bytes())
    with pytest.raises(DataError, match="magic"):
        FashionMNIST(tmp_path, "train")
    # truncated data (valid gzip of a short idx)
    raw = gzip.decompress(good_images)
    images_file.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated"):
        FashionMNIST(tmp_path, "train")
    # damaged gzip stream
    images_file.write_bytes(good_images[: len(good_images) // 2])
    with pytest.raises(DataError, match="gzip|truncated"):
        FashionMNIST(tmp_path, "train")
    # not an idx file at all
    images_file.write_bytes(b"hello")
    with pytest.raises(DataError, match="magic"):
        FashionMNIST(tmp_path, "train")
    # image and label counts disagree
    images_file.write_bytes(good_images)
    labels_file.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DataError, match="5 images but 4 labels"):
        FashionMNIST(tmp_path, "train")
    # labels out of range
    labels_file.write_bytes(gzip.compress(idx_bytes(np.full(5, 10, np.uint8))))
    with pytest.raises(DataError, match="10 classes"):
        FashionMNIST(tmp_path, "train")


def test_read_idx_offsets(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "a", magic=2051), array)
    assert len(idx_bytes(array)) - array.size == 16
    assert len(idx_bytes(np.zeros(3, np.uint8))) - 3 == 8


def _write_image(path, color, size=(40, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_classes_labels_and_pixels(tmp_path):
    _write_image(tmp_path / "zebra" / "a.png", (255, 0, 0))
    _write_image(tmp_path / "cat" / "x.jpg", (0, 0, 255), size=(64, 64))
    _write_image(tmp_path / "cat" / "sub" / "y.PNG", (0, 255, 0), size=(20, 50))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("ignored: not a folder")
    ds = ImageFolder(tmp_path, size=16)
    assert isinstance(ds, ImageDataset)
    assert ds.class_names == ("cat", "zebra")
    assert ds.labels.tolist() == [0, 0, 1] and len(ds) == 3
    assert [f.name for f in ds.files] == ["y.PNG", "x.jpg", "a.png"]  # sorted paths per class
    image, label = ds[2]
    assert image.shape == (3, 16, 16) and label == 1
    torch.testing.assert_close(image[:, 8, 8], torch.tensor([1.0, -1.0, -1.0]))
    green, _ = ds[0]  # 20 x 50 portrait: resized to 16 x 40, center-cropped
    torch.testing.assert_close(green[:, 8, 8], torch.tensor([-1.0, 1.0, -1.0]))
    blue = ds[1][0][:, 0, 0]  # JPEG: lossy
    torch.testing.assert_close(blue, torch.tensor([-1.0, -1.0, 1.0]), atol=0.03, rtol=0)
    images, labels = ds.batch([0, 2])
    assert images.shape == (2, 3, 16, 16) and labels.tolist() == [0, 1]
    assert images.min() >= -1 and images.max() <= 1
    gray = ImageFolder(tmp_path, size=8, mode="L")
    assert gray[0][0].shape == (1, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        ImageFolder(tmp_path)
    (tmp_path / "empty" / "broken.png").write_bytes(b"\x89PNG not really")
    ds = ImageFolder(tmp_path, size=8)
    with pytest.raises(DataError, match="cannot decode image .*broken.png"):
        ds[0]


@pytest.mark.skipif(not REAL_FMNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist():
    test = FashionMNIST(REAL_FMNIST, "test")
    assert len(test) == 10_000 and test.pixels.shape == (10_000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
