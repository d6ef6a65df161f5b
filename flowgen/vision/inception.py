"""The standard FID feature extractor: Inception-v3 pool3 features from a user-supplied weights file.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TF-FID graph of Heusel et
al. 2017, ported bit-exactly, with TensorFlow-1.x bilinear resizing to 299 x 299), installed with
the ``fid`` extra: ``pip install 'flowgen[fid]'``. Weights are never downloaded: pass the
``weights-inception-2015-12-05-6726825d.pth`` file that torch-fidelity publishes (or the same
state dict saved as ``.safetensors``). The file is read with ``torch.load(weights_only=True)``
(tensors only, never an arbitrary pickle) and handed to torch-fidelity from memory.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from flowgen.errors import CheckpointError, InputError
from flowgen.vision.data import to_pixels

FEATURE_DIM = 2048
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's release asset
_MISSING_EXTRA = (
    "the Inception FID path needs torch-fidelity and torchvision: pip install 'flowgen[fid]' "
    "(torchvision must match torch, e.g. torchvision 0.26 for torch 2.11)"
)


def load_inception_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an Inception state dict (``.pth`` via ``weights_only=True``, or ``.safetensors``)."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(
            f"Inception weights file not found: {file}; download {WEIGHTS_FILE} (torch-fidelity's "
            "release) where you have internet and pass its path"
        )
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file), device="cpu")
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip/safetensors errors have no common base class
        raise CheckpointError(
            f"{file} is not a readable Inception weights file ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); re-download {WEIGHTS_FILE}"
        ) from err
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{file} does not hold a state dict of tensors")
    return state


class InceptionFeatures(torch.nn.Module):
    """Inception-v3 pool3 features ``(B, 2048)`` of images in ``[-1, 1]``, for the standard FID.

    Images are quantised to uint8 as if saved to PNG (values outside ``[-1, 1]`` are clipped),
    grayscale is repeated to RGB, and torch-fidelity resizes to 299 x 299 like TF-FID.

    Args:
        weights_path: the Inception weights file (see the module docstring).
    """

    feature_dim = FEATURE_DIM

    def __init__(self, weights_path: str | os.PathLike):
        super().__init__()
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as err:
            raise ImportError(_MISSING_EXTRA) from err

        state = load_inception_state_dict(weights_path)
        buffer = io.BytesIO()
        torch.save(state, buffer)  # our own tensors-only pickle: safe for torch-fidelity's loader
        buffer.seek(0)
        try:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=buffer
            )
        except RuntimeError as err:  # load_state_dict: missing/unexpected keys, wrong shapes
            first = str(err).splitlines()[0]
            raise CheckpointError(
                f"{weights_path} does not fit torch-fidelity's Inception-v3 ({first}); it must be "
                f"{WEIGHTS_FILE} or the same state dict"
            ) from err

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise InputError(
                f"expected images (B, 1 or 3, H, W) in [-1, 1], got {tuple(images.shape)}"
            )
        pixels = to_pixels(images)  # (B, C, H, W) uint8
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        (pool3,) = self.net(pixels)
        return pool3  # (B, 2048)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)
