"""Image datasets with one interface: Fashion-MNIST (idx files) and class folders (ImageNet layout).

Both return images as float tensors ``(C, H, W)`` in ``[-1, 1]`` (``x = 2 * pixel / 255 - 1``)
with an integer label, list their ``class_names`` and build whole batches with
``batch(indices) -> (images (B, C, H, W), labels (B,))``. Fashion-MNIST (Xiao et al. 2017) is read
once into one uint8 tensor (60,000 x 28 x 28 = 47 MB for the train split); class folders are
decoded on demand with PIL.

Every way a dataset can be unusable -- missing folder or file, wrong magic number, truncated
file, labels that do not match the images, undecodable image -- raises
:class:`~flowgen.errors.DataError` saying what to install or fix.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

from flowgen.errors import DataError

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # 0x00000803: ubyte, 3 dims; 0x00000801: ubyte, 1 dim
_INSTALL_HINT = (
    "install it with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu) or put the four "
    "*-idx*-ubyte.gz files of https://github.com/zalandoresearch/fashion-mnist there"
)


@runtime_checkable
class ImageDataset(Protocol):
    """What every flowgen image dataset provides."""

    class_names: tuple[str, ...]
    labels: torch.Tensor  # (N,) int64, known without decoding any image

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """``(image (C, H, W) float32 in [-1, 1], label)``."""
        ...

    def batch(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (B, C, H, W) float32 in [-1, 1], labels (B,) int64)``."""
        ...


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels ``[0, 255]`` -> float32 ``[-1, 1]``."""
    return pixels.float().div_(127.5).sub_(1.0)


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """float images in ``[-1, 1]`` -> uint8 pixels (clamped and rounded), the inverse of the above."""
    return ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


class FashionMNIST:
    """Fashion-MNIST: 28 x 28 grayscale articles in 10 classes, 60,000 train / 10,000 test.

    Args:
        root: folder with the idx files (``.gz`` or unpacked); the Debian package's by default.
        split: ``"train"`` or ``"test"``.

    Attributes:
        pixels: ``(N, 1, 28, 28)`` uint8, the whole split.
        labels: ``(N,)`` int64 in ``0..9``.
    """

    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(
        self,
        root: str | os.PathLike = FASHION_MNIST_ROOT,
        split: Literal["train", "test"] = "train",
    ):
        if split not in _IDX_FILES:
            raise DataError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise DataError(f"Fashion-MNIST folder not found: {self.root}; {_INSTALL_HINT}")
        image_name, label_name = _IDX_FILES[split]
        images = read_idx(_find_idx(self.root, image_name), magic=_IMAGES_MAGIC)  # (N, H, W)
        labels = read_idx(_find_idx(self.root, label_name), magic=_LABELS_MAGIC)  # (N,)
        if len(images) != len(labels):
            raise DataError(
                f"{self.root}: the {split} split has {len(images)} images but {len(labels)} labels; "
                "the files do not belong together, re-install them"
            )
        if len(labels) and int(labels.max()) >= len(CLASS_NAMES):
            raise DataError(
                f"{self.root}: {split} labels go up to {int(labels.max())}, Fashion-MNIST has "
                f"{len(CLASS_NAMES)} classes; the labels file is not Fashion-MNIST's"
            )
        self.pixels = torch.from_numpy(images).unsqueeze(1)  # (N, 1, H, W) uint8
        self.labels = torch.from_numpy(labels.astype(np.int64))  # (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_unit_range(self.pixels[index]), int(self.labels[index])

    def batch(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return to_unit_range(self.pixels[index]), self.labels[index]

    def __repr__(self) -> str:
        return f"FashionMNIST(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


def _find_idx(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root / name}.gz not found; {_INSTALL_HINT}")


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format, optionally gzipped) of unsigned bytes.

    Layout: a big-endian int32 magic number ``0x0000 08 D`` (``08``: ubyte, ``D`` dimensions),
    ``D`` big-endian int32 sizes, then the data -- offset 16 for images (D = 3), 8 for labels.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(
            f"{path} is unreadable or a damaged gzip file ({err}); re-install it"
        ) from err
    if len(raw) < 4:
        raise DataError(f"{path} is truncated ({len(raw)} bytes); re-install it")
    found = int.from_bytes(raw[:4], "big")
    ndim = found & 0xFF
    if found >> 8 != 0x08 or not 1 <= ndim <= 4 or (magic is not None and found != magic):
        want = f" (expected {magic:#010x})" if magic is not None else ""
        raise DataError(f"{path}: bad idx magic number {found:#010x}{want}; not this idx file")
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(f"{path} is truncated inside its header; re-install it")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = offset + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header {list(shape)} needs {expected}; "
            "the file is truncated or corrupted, re-install it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape).copy()


class ImageFolder:
    """Images in class folders, the ImageNet layout ``root/<class name>/**/<image>``.

    Classes are the sub-folder names, sorted; label ``i`` is ``class_names[i]``. Images are
    decoded with PIL when indexed: converted to RGB or grayscale, the shorter side resized to
    ``size`` (box filter while the image is much larger, then bicubic, as in ADM's
    ``center_crop_arr``) and center-cropped to ``size x size``.

    Args:
        root: the folder holding one sub-folder per class.
        size: output height and width.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).
    """

    def __init__(
        self, root: str | os.PathLike, *, size: int = 64, mode: Literal["RGB", "L"] = "RGB"
    ):
        if size < 1:
            raise DataError(f"image size must be >= 1, got {size}")
        if mode not in ("RGB", "L"):
            raise DataError(f"mode must be 'RGB' or 'L', got {mode!r}")
        self.root, self.size, self.mode = Path(root), size, mode
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        classes = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not classes:
            raise DataError(
                f"{self.root} has no class sub-folders; expected root/<class name>/<image files>"
            )
        files: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(classes):
            found = sorted(
                p
                for p in (self.root / name).rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
            )
            if not found:
                raise DataError(
                    f"class folder {self.root / name} holds no images "
                    f"({', '.join(sorted(IMAGE_EXTENSIONS))}); remove it or add images"
                )
            files += found
            labels += [label] * len(found)
        self.class_names: tuple[str, ...] = tuple(classes)
        self.files: tuple[Path, ...] = tuple(files)
        self.labels = torch.tensor(labels, dtype=torch.long)  # (N,)

    @property
    def channels(self) -> int:
        return 3 if self.mode == "RGB" else 1

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_unit_range(self.load_pixels(index)), int(self.labels[index])

    def batch(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(index) == 0:
            return torch.empty(0, self.channels, self.size, self.size), self.labels[index]
        pixels = torch.stack([self.load_pixels(int(i)) for i in index])  # (B, C, S, S) uint8
        return to_unit_range(pixels), self.labels[index]

    def load_pixels(self, index: int) -> torch.Tensor:
        """Image ``index`` as uint8 ``(C, size, size)``."""
        from PIL import Image, UnidentifiedImageError

        path = self.files[index]
        try:
            with Image.open(path) as img:
                img = center_crop(img.convert(self.mode), self.size)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(f"cannot decode image {path} ({err}); fix or remove the file") from err
        array = np.asarray(img, dtype=np.uint8)
        if array.ndim == 2:
            array = array[:, :, None]
        return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (C, S, S)

    def __repr__(self) -> str:
        return (
            f"ImageFolder(root={str(self.root)!r}, size={self.size}, mode={self.mode!r}, "
            f"n={len(self)}, classes={len(self.class_names)})"
        )


def center_crop(img, size: int):
    """Resize the shorter side of a PIL image to ``size``, then crop the center ``size x size``."""
    from PIL import Image

    while min(img.size) >= 2 * size:  # box-downsample by halves first: no aliasing
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.Resampling.BOX)
    scale = size / min(img.size)
    new = tuple(max(size, round(x * scale)) for x in img.size)
    img = img.resize(new, resample=Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return img.crop((left, top, left + size, top + size))
