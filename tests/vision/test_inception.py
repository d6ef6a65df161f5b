"""The standard Inception FID path, on a locally created (randomly initialised) weights file."""

import pathlib
from unittest import mock

import pytest
import torch

from flowgen.errors import CheckpointError, InputError

inception_module = pytest.importorskip(
    "torch_fidelity.feature_extractor_inceptionv3", reason="pip install 'flowgen[fid]'"
)
from flowgen.vision.inception import InceptionFeatures  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random-init state dict of torch-fidelity's Inception-v3, saved like the real release."""
    cls = inception_module.FeatureExtractorInceptionV3
    torch.manual_seed(0)
    with (
        mock.patch.object(inception_module, "load_state_dict_from_url", return_value=None),
        mock.patch.object(cls, "load_state_dict"),  # keep the random init, download nothing
    ):
        net = cls("inception-v3-compat", ["2048"])
    state = net.state_dict()
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(state, path)
    return path, state


def test_loads_local_weights_and_gives_2048_features(weights):
    path, state = weights
    extractor = InceptionFeatures(path)
    name = "Mixed_7c.branch_pool.conv.weight"
    torch.testing.assert_close(extractor.net.state_dict()[name], state[name])
    rgb = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = extractor.features(rgb)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    gray = extractor.features(rgb[:, :1])  # grayscale is repeated to RGB
    torch.testing.assert_close(gray, extractor.features(rgb[:, :1].expand(-1, 3, -1, -1)))
    with pytest.raises(InputError):
        extractor.features(torch.zeros(2, 2, 32, 32))


def test_safetensors_weights(weights, tmp_path):
    from safetensors.torch import save_file

    _, state = weights
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    extractor = InceptionFeatures(path)
    name = "fc.weight"
    torch.testing.assert_close(extractor.net.state_dict()[name], state[name])


def test_missing_corrupt_foreign_and_unsafe_files(weights, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        InceptionFeatures(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(CheckpointError, match="not a readable"):
        InceptionFeatures(garbage)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(weights[0].read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="not a readable"):
        InceptionFeatures(truncated)
    partial = tmp_path / "partial.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, partial)
    with pytest.raises(CheckpointError, match="does not fit"):
        InceptionFeatures(partial)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"fc.weight": torch.zeros(1), "obj": pathlib.PurePosixPath("x")}, unsafe)
    with pytest.raises(CheckpointError, match="not a readable"):  # weights_only refuses objects
        InceptionFeatures(unsafe)
