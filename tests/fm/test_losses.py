import pytest
import torch

from flowgen.errors import InputError
from flowgen.fm.losses import cfm_loss


def test_plain_loss_is_mse():
    a, b = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    torch.testing.assert_close(cfm_loss(a, b), ((a - b) ** 2).mean())


def test_mask_ignores_padding_per_sample():
    # Two sequences of lengths 3 and 5 padded to 5: each sample is averaged over its own frames.
    a, b = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    lengths = torch.tensor([3, 5])
    mask = (torch.arange(5)[None, :] < lengths[:, None])[:, None, :]  # (B, 1, T)
    b_padded = b.clone()
    b_padded[0, :, 3:] = 1e6  # garbage in the padding must not matter
    expected = torch.stack([((a[0, :, :3] - b[0, :, :3]) ** 2).mean(), ((a[1] - b[1]) ** 2).mean()])
    torch.testing.assert_close(cfm_loss(a, b_padded, mask=mask, reduction="none"), expected)
    torch.testing.assert_close(cfm_loss(a, b_padded, mask=mask), expected.mean())


def test_weights():
    a, b = torch.randn(3, 2), torch.randn(3, 2)
    w = torch.tensor([0.0, 1.0, 2.0])
    per = ((a - b) ** 2).mean(1)
    torch.testing.assert_close(cfm_loss(a, b, weights=w), (w * per).mean())
    with pytest.raises(InputError):
        cfm_loss(a, b, weights=torch.ones(2))
    with pytest.raises(InputError):
        cfm_loss(a, b[:2])
