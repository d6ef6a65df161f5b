import ast
import itertools
import math
from pathlib import Path

import pytest
import torch

import flowgen.fm.couplings as couplings
from flowgen.errors import InputError
from flowgen.fm.couplings import (
    WCFM_KAPPA_DEFAULT,
    Coupled,
    class_conditional_ot_permutation,
    couple,
    effective_sample_size,
    exact_ot_permutation,
    ot_plan,
    sample_plan,
    sinkhorn_plan,
    wcfm_epsilon,
    wcfm_weights,
)


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(scope="module", autouse=True)
def ot():
    """POT, imported once in setup: its import pulls in scikit-learn and takes seconds."""
    import ot

    return ot


def _pot_cost(x_0, x_1):
    """Squared Euclidean cost computed by POT, independently of the module under test."""
    import ot

    return ot.dist(x_0.reshape(len(x_0), -1).numpy(), x_1.reshape(len(x_1), -1).numpy())


def _pair_cost(x_0, x_1, perm):
    return float(((x_0 - x_1[perm]) ** 2).reshape(len(x_0), -1).sum())


def test_module_imports_only_torch_at_top_level():
    tree = ast.parse(Path(couplings.__file__).read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module.split(".")[0])
    assert top <= {"__future__", "math", "dataclasses", "typing", "torch", "flowgen"}, top


# --- exact OT ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("batch", "seed"), [(2, 0), (5, 1), (8, 2), (16, 3)])
def test_exact_ot_permutation_is_pots_plan(batch, seed, ot):
    import numpy as np

    x_0, x_1 = _randn(batch, 2, 3, seed=seed), _randn(batch, 2, 3, seed=seed + 100)
    perm = exact_ot_permutation(x_0, x_1)
    assert sorted(perm.tolist()) == list(range(batch))
    plan = ot.emd(np.full(batch, 1 / batch), np.full(batch, 1 / batch), _pot_cost(x_0, x_1))
    assert set(zip(*np.nonzero(plan))) == {(i, int(perm[i])) for i in range(batch)}
    torch.testing.assert_close(ot_plan(x_0, x_1), torch.from_numpy(plan))


@pytest.mark.parametrize("batch", [2, 3, 4, 5, 6])
def test_exact_ot_permutation_is_minimal_by_brute_force(batch):
    for seed in range(3):
        x_0, x_1 = _randn(batch, 3, seed=seed), _randn(batch, 3, seed=seed + 50) + 1.0
        best = min(_pair_cost(x_0, x_1, list(p)) for p in itertools.permutations(range(batch)))
        assert _pair_cost(x_0, x_1, exact_ot_permutation(x_0, x_1)) == pytest.approx(best, 1e-12)


def test_ot_pairing_reduces_cost_vs_identity():
    x_0, x_1 = _randn(64, 8, seed=1), _randn(64, 8, seed=2) * 2 + 1
    perm = exact_ot_permutation(x_0, x_1)
    assert _pair_cost(x_0, x_1, perm) < 0.9 * _pair_cost(x_0, x_1, torch.arange(64))


def test_exact_ot_batch_of_one_and_float32():
    x_0, x_1 = _randn(1, 4), _randn(1, 4, seed=1)
    assert exact_ot_permutation(x_0, x_1).tolist() == [0]
    x_0, x_1 = _randn(12, 4, dtype=torch.float32), _randn(12, 4, seed=1, dtype=torch.float32)
    perm = exact_ot_permutation(x_0, x_1)
    assert perm.dtype == torch.long
    assert perm.tolist() == exact_ot_permutation(x_0.double(), x_1.double()).tolist()


# --- Sinkhorn ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "m", "reg"), [(10, 10, 0.05), (7, 5, 0.1), (12, 12, 0.02)])
def test_sinkhorn_matches_pot(n, m, reg, ot):
    import numpy as np

    x_0, x_1 = _randn(n, 3, seed=3), _randn(m, 3, seed=4)
    cost = _pot_cost(x_0, x_1)
    cost = cost / cost.max()
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    ref = ot.sinkhorn(a, b, cost, reg, numItermax=100_000, stopThr=1e-14)
    ref_log = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", numItermax=100_000, stopThr=1e-14)
    plan = sinkhorn_plan(x_0, x_1, reg=reg)  # the default 200 iterations
    torch.testing.assert_close(plan, torch.from_numpy(ref), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(plan, torch.from_numpy(ref_log), rtol=1e-9, atol=1e-12)


def test_sinkhorn_unnormalised_cost_matches_pot(ot):
    import numpy as np

    x_0, x_1 = _randn(6, 2, seed=5), _randn(6, 2, seed=6)
    a = np.full(6, 1 / 6)
    ref = ot.sinkhorn(a, a, _pot_cost(x_0, x_1), 0.5, numItermax=100_000, stopThr=1e-14)
    plan = sinkhorn_plan(x_0, x_1, reg=0.5, n_iters=1000, normalize_cost=False)
    torch.testing.assert_close(plan, torch.from_numpy(ref), rtol=1e-9, atol=1e-12)


def test_sinkhorn_marginals():
    x_0, x_1 = _randn(9, 4, seed=7), _randn(6, 4, seed=8)
    plan = sinkhorn_plan(x_0, x_1, reg=0.05, n_iters=1000)
    assert plan.shape == (9, 6) and (plan >= 0).all()
    torch.testing.assert_close(plan.sum(1), torch.full((9,), 1 / 9, dtype=torch.float64))
    torch.testing.assert_close(plan.sum(0), torch.full((6,), 1 / 6, dtype=torch.float64))


def test_sinkhorn_approaches_exact_plan_as_reg_shrinks():
    x_0, x_1 = _randn(6, 2, seed=3), _randn(6, 2, seed=4)
    exact = ot_plan(x_0, x_1)
    # Sinkhorn converges more slowly as reg shrinks, hence more iterations for the smaller ones.
    plans = [
        sinkhorn_plan(x_0, x_1, reg=r, n_iters=k)
        for r, k in ((0.1, 200), (0.01, 500), (0.001, 2000))
    ]
    gaps = [float((p - exact).abs().sum()) for p in plans]  # total variation, in [0, 2]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3
    assert torch.equal(plans[2].argmax(1), exact_ot_permutation(x_0, x_1))


def test_sinkhorn_log_domain_is_stable_for_tiny_reg_in_float32():
    x_0, x_1 = (
        _randn(32, 8, seed=11, dtype=torch.float32),
        _randn(32, 8, seed=12, dtype=torch.float32),
    )
    plan = sinkhorn_plan(x_0, x_1, reg=1e-4, n_iters=50)
    assert plan.dtype == torch.float32 and torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(1), torch.full((32,), 1 / 32))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sinkhorn_runs_on_cuda():
    x_0, x_1 = _randn(16, 5, seed=13), _randn(16, 5, seed=14)
    plan = sinkhorn_plan(x_0.cuda(), x_1.cuda(), reg=0.05)
    assert plan.device.type == "cuda"
    torch.testing.assert_close(plan.cpu(), sinkhorn_plan(x_0, x_1, reg=0.05))


# --- sampling from a plan ---------------------------------------------------------------------
def test_sample_plan_follows_a_permutation_plan():
    perm = torch.tensor([2, 0, 3, 1])
    plan = torch.zeros(4, 4, dtype=torch.float64)
    plan[torch.arange(4), perm] = 0.25
    i, j = sample_plan(plan, 100, generator=torch.Generator().manual_seed(0))
    assert i.shape == j.shape == (100,)
    assert torch.equal(j, perm[i])
    i, j = sample_plan(plan, 4, replace=False)
    assert sorted(i.tolist()) == [0, 1, 2, 3] and torch.equal(j, perm[i])


def test_sample_plan_frequencies_and_reproducibility():
    plan = torch.tensor([[0.1, 0.0, 0.2], [0.3, 0.15, 0.25]])
    draws = sample_plan(plan, 40_000, generator=torch.Generator().manual_seed(1))
    again = sample_plan(plan, 40_000, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(draws, again))
    counts = torch.zeros(2, 3).index_put_(draws, torch.ones(40_000), accumulate=True)
    torch.testing.assert_close(counts / 40_000, plan, atol=0.01, rtol=0)
    assert counts[0, 1] == 0


def test_sample_plan_rejects_bad_input():
    with pytest.raises(InputError):
        sample_plan(torch.tensor([[0.5, -0.1], [0.3, 0.3]]), 2)
    with pytest.raises(InputError):
        sample_plan(torch.zeros(2, 2), 2)
    with pytest.raises(InputError):
        sample_plan(torch.eye(2), 3, replace=False)
    with pytest.raises(InputError):
        sample_plan(torch.ones(4), 2)


# --- class-conditional OT ---------------------------------------------------------------------
def test_class_conditional_ot_keeps_labels_and_is_groupwise_exact(ot):
    import numpy as np

    labels = torch.tensor([2, 0, 1, 2, 0, 0, 1, 2, 2, 0, 1, 7])
    x_0, x_1 = _randn(12, 3, seed=15), _randn(12, 3, seed=16)
    perm = class_conditional_ot_permutation(x_0, x_1, labels)
    assert sorted(perm.tolist()) == list(range(12))
    assert torch.equal(labels[perm], labels)
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        k = len(idx)
        plan = ot.emd(np.full(k, 1 / k), np.full(k, 1 / k), _pot_cost(x_0[idx], x_1[idx]))
        local = {int(p) for p in perm[idx]}
        assert local == set(idx.tolist())
        # perm maps group position a to group position b exactly where POT's group plan is nonzero
        pos = {int(g): a for a, g in enumerate(idx)}
        assert set(zip(*np.nonzero(plan))) == {(a, pos[int(perm[g])]) for a, g in enumerate(idx)}


def test_class_conditional_ot_with_one_label_is_plain_ot():
    x_0, x_1 = _randn(10, 4, seed=17), _randn(10, 4, seed=18)
    perm = class_conditional_ot_permutation(x_0, x_1, torch.zeros(10, dtype=torch.long))
    assert torch.equal(perm, exact_ot_permutation(x_0, x_1))


# --- W-CFM ------------------------------------------------------------------------------------
def test_wcfm_weights_match_hand_formula():
    x_0, x_1 = _randn(5, 2, 3, seed=19), _randn(5, 2, 3, seed=20)
    eps = 1.7
    rows0, rows1 = x_0.reshape(5, -1).tolist(), x_1.reshape(5, -1).tolist()
    dist = [math.sqrt(sum((a - b) ** 2 for a, b in zip(r0, r1))) for r0, r1 in zip(rows0, rows1)]
    expected = torch.tensor([math.exp(-d / eps) for d in dist], dtype=torch.float64)
    torch.testing.assert_close(wcfm_weights(x_0, x_1, eps=eps), expected)
    expected_sq = torch.tensor([math.exp(-(d**2) / eps) for d in dist], dtype=torch.float64)
    torch.testing.assert_close(wcfm_weights(x_0, x_1, eps=eps, cost="squared"), expected_sq)


def test_wcfm_batch_normalisation_is_rescaled_raw_weights():
    x_0, x_1 = _randn(16, 6, seed=21), _randn(16, 6, seed=22)
    raw = wcfm_weights(x_0, x_1, eps=2.0)
    batch = wcfm_weights(x_0, x_1, eps=2.0, normalize="batch")
    torch.testing.assert_close(batch.mean(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(batch, raw / raw.mean())
    losses = _randn(16, seed=23).abs()
    torch.testing.assert_close((batch * losses).mean(), (raw * losses).sum() / raw.sum())


def test_wcfm_batch_normalisation_survives_underflow():
    x_0, x_1 = (
        _randn(8, 4, seed=24, dtype=torch.float32) * 1e3,
        _randn(8, 4, seed=25, dtype=torch.float32),
    )
    assert (wcfm_weights(x_0, x_1, eps=1.0) == 0).all()  # raw weights underflow in float32
    w = wcfm_weights(x_0, x_1, eps=1.0, normalize="batch")
    assert torch.isfinite(w).all() and w.dtype == torch.float32
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    log_w = -(x_0.double() - x_1.double()).norm(dim=1)
    torch.testing.assert_close(w.double(), 8 * torch.softmax(log_w, 0), rtol=1e-4, atol=1e-6)


def test_wcfm_epsilon_heuristic():
    assert wcfm_epsilon(4, kappa=0.5) == pytest.approx(1.0)
    assert wcfm_epsilon(3 * 32 * 32) == pytest.approx(5.0)  # the paper's best CIFAR-10 eps
    assert math.isclose(WCFM_KAPPA_DEFAULT, 5 / math.sqrt(3072))
    x_0, x_1 = _randn(4, 3, 4, 4, seed=26), _randn(4, 3, 4, 4, seed=27)
    torch.testing.assert_close(
        wcfm_weights(x_0, x_1, kappa=0.3), wcfm_weights(x_0, x_1, eps=0.3 * math.sqrt(48))
    )


def test_effective_sample_size():
    assert float(effective_sample_size(torch.full((7,), 0.3))) == pytest.approx(7.0)
    assert float(effective_sample_size(torch.tensor([0.0, 0.0, 2.5, 0.0]))) == pytest.approx(1.0)
    w = _randn(10, seed=28).abs()
    expected = float(w.sum()) ** 2 / float((w**2).sum())
    assert float(effective_sample_size(w)) == pytest.approx(expected)
    assert float(effective_sample_size(w * 1e-30)) == pytest.approx(expected)
    for bad in (torch.zeros(3), torch.tensor([1.0, -1.0]), torch.ones(2, 2)):
        with pytest.raises(InputError):
            effective_sample_size(bad)


# --- couple -----------------------------------------------------------------------------------
def _ids(batch):
    return torch.arange(batch) * 10  # labels that identify each x_1 row


def test_couple_independent_keeps_pairs():
    x_0, x_1 = _randn(6, 3, seed=29), _randn(6, 3, seed=30)
    out = couple(x_0, x_1, "independent", labels=_ids(6))
    assert isinstance(out, Coupled) and out.weights is None
    assert out.x_0 is x_0 and out.x_1 is x_1 and torch.equal(out.labels, _ids(6))


def test_couple_ot_permutes_x1_rows_and_labels_follow():
    x_0, x_1 = _randn(9, 2, 2, seed=31), _randn(9, 2, 2, seed=32)
    out = couple(x_0, x_1, "ot", labels=_ids(9))
    assert torch.equal(out.x_0, x_0) and out.weights is None
    rows = out.labels // 10
    assert sorted(rows.tolist()) == list(range(9))
    assert torch.equal(out.x_1, x_1[rows])
    assert torch.equal(rows, exact_ot_permutation(x_0, x_1))
    assert couple(x_0, x_1, "ot").labels is None


def test_couple_sinkhorn_resamples_rows_and_labels_follow():
    x_0, x_1 = _randn(12, 3, seed=33), _randn(12, 3, seed=34)
    out = couple(x_0, x_1, "sinkhorn", labels=_ids(12), generator=torch.Generator().manual_seed(0))
    again = couple(
        x_0, x_1, "sinkhorn", labels=_ids(12), generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(out.x_1, again.x_1) and torch.equal(out.x_0, again.x_0)
    assert out.x_0.shape == x_0.shape and out.weights is None
    assert torch.equal(out.x_1, x_1[out.labels // 10])
    assert all(any(torch.equal(r, s) for s in x_0) for r in out.x_0)


def test_couple_sinkhorn_with_tiny_reg_gives_ot_pairs():
    # At reg = 1e-3 the entropic plan keeps ~1-2 % of each row off the OT permutation, so pairs
    # drawn from it are OT pairs with probability ~0.98: check the frequency over 50 draws.
    x_0, x_1 = _randn(8, 2, seed=35), _randn(8, 2, seed=36)
    perm = exact_ot_permutation(x_0, x_1)
    hits = 0
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        out = couple(x_0, x_1, "sinkhorn", labels=torch.arange(8), sinkhorn_reg=1e-3, generator=g)
        rows_0 = [next(k for k in range(8) if torch.equal(r, x_0[k])) for r in out.x_0]
        hits += sum(int(a == b) for a, b in zip(out.labels.tolist(), perm[rows_0].tolist()))
    assert hits / 400 > 0.95


def test_couple_class_ot_keeps_labels():
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 2, 2])
    x_0, x_1 = _randn(8, 3, seed=37), _randn(8, 3, seed=38)
    out = couple(x_0, x_1, "class_ot", labels=labels)
    assert torch.equal(out.labels, labels) and torch.equal(out.x_0, x_0)
    perm = class_conditional_ot_permutation(x_0, x_1, labels)
    assert torch.equal(out.x_1, x_1[perm])


def test_couple_wcfm_sets_weights_and_keeps_pairs():
    x_0, x_1 = _randn(10, 4, seed=39), _randn(10, 4, seed=40)
    out = couple(x_0, x_1, "wcfm", labels=_ids(10), wcfm_eps=1.5)
    assert out.x_0 is x_0 and out.x_1 is x_1 and torch.equal(out.labels, _ids(10))
    torch.testing.assert_close(out.weights.mean(), torch.tensor(1.0, dtype=torch.float64))
    raw = couple(x_0, x_1, "wcfm", wcfm_eps=1.5, wcfm_normalize="none").weights
    torch.testing.assert_close(raw, wcfm_weights(x_0, x_1, eps=1.5))
    torch.testing.assert_close(
        couple(x_0, x_1, "wcfm", wcfm_kappa=0.2).weights,
        wcfm_weights(x_0, x_1, kappa=0.2, normalize="batch"),
    )


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["independent", "ot", "sinkhorn", "class_ot", "wcfm"])
def test_couple_rejects_mismatched_batches(method):
    with pytest.raises(InputError, match="batch size"):
        couple(_randn(4, 2), _randn(5, 2), method, labels=torch.zeros(5, dtype=torch.long))
    with pytest.raises(InputError, match="sample shape"):
        couple(_randn(4, 2), _randn(4, 3), method, labels=torch.zeros(4, dtype=torch.long))


def test_bad_input_raises_input_error():
    x_0, x_1 = _randn(4, 2), _randn(4, 2, seed=1)
    with pytest.raises(InputError, match="labels"):
        couple(x_0, x_1, "class_ot")
    with pytest.raises(InputError, match="unknown coupling method"):
        couple(x_0, x_1, "optimal")
    with pytest.raises(InputError, match="labels"):
        couple(x_0, x_1, "ot", labels=torch.zeros(3))
    for eps in (0.0, -1.0):
        with pytest.raises(InputError, match="eps"):
            wcfm_weights(x_0, x_1, eps=eps)
        with pytest.raises(InputError, match="eps"):
            couple(x_0, x_1, "wcfm", wcfm_eps=eps)
    with pytest.raises(InputError):
        wcfm_epsilon(8, kappa=0.0)
    with pytest.raises(InputError):
        wcfm_weights(x_0, x_1, normalize="sum")
    with pytest.raises(InputError):
        sinkhorn_plan(x_0, x_1, reg=0.0)
    with pytest.raises(InputError, match="batch size"):
        exact_ot_permutation(x_0, _randn(3, 2))
    with pytest.raises(InputError, match="batch size"):
        wcfm_weights(x_0, _randn(3, 2))
    with pytest.raises(InputError, match="non-finite"):
        exact_ot_permutation(x_0, torch.full((4, 2), float("nan"), dtype=torch.float64))
    assert issubclass(InputError, ValueError)
