"""Minibatch couplings of noise ``x_0`` and data ``x_1`` for conditional flow matching.

Convention: ``x_0 ~ p_0`` is noise (t=0), ``x_1 ~ p_1`` is data (t=1); rows are paired, so pair
``b`` is ``(x_0[b], x_1[b])`` and labels travel with ``x_1``. Costs use flattened samples.

- ``"independent"``: keep the given pairs (I-CFM; Tong et al. 2024, arXiv 2302.00482).
- ``"ot"``: exact minibatch OT with squared Euclidean cost (OT-CFM; Tong et al. 2024;
  Pooladian et al. 2023). Equal sizes and uniform weights make the plan a permutation (Birkhoff).
- ``"sinkhorn"``: entropic OT plan ``argmin <P, C> - reg H(P)`` (Cuturi 2013) in the log domain,
  then pairs drawn from the plan, as torchcfm's ``OTPlanSampler`` does.
- ``"class_ot"``: exact OT within each label group only; C2OT's class-conditional case
  (Cheng & Schwing 2025, arXiv 2503.10636, conditional cost weight -> infinity).
- ``"wcfm"``: Weighted CFM (Calvo-Ordonez et al. 2025, arXiv 2507.22270): keep the independent
  pairs and weight each one's loss by the Gibbs kernel ``w = exp(-c(x_0, x_1) / eps)``.

W-CFM details, and where they come from. The paper body could not be read from here (the stored
copies of arxiv.org/html/2507.22270v1/v2 only gave the abstract), so the choices below rest on
two independent secondary sources that agree with each other:

- Cost: the **Euclidean distance** ``c = ||x_0 - x_1||``, not its square. Source: the README and
  training script of a public unofficial implementation ("w_eps(x, y) = exp(-||x - y|| / eps)",
  ``torch.norm(x1 - x0)``), and a reader's notes on the paper giving
  ``w_eps = exp(-||x0 - x1|| / eps)`` for the plain estimator (marginal corrections set to 1).
  The ``eps = kappa sqrt(d)`` scaling below agrees: distances grow like ``sqrt(d)``, squared ones
  like ``d``. ``cost="squared"`` is available if the paper turns out to say otherwise.
- ``eps``: the high-dimensional heuristic ``eps = kappa sqrt(d)`` (both sources), with ``kappa``
  picked in the paper by an elbow on the relative variance of the marginal tilt (notes). No
  recommended ``kappa`` was found. The paper's CIFAR-10 sweep (its Table 6, from the notes: FID
  14.01, 8.89, 7.65, 7.33, 7.42 at eps 1, 2, 3, 5, 7.5) is best at ``eps = 5`` with
  ``d = 3 * 32 * 32``, so the default is ``kappa = 5 / sqrt(3072) ~ 0.090``: derived, not quoted.
- Normalisation: the paper's loss is ``E[w l]`` with raw weights (the unofficial code uses
  ``(w * l).mean()``); no per-batch normalisation was found. ``normalize="batch"`` (the default of
  :func:`couple`) is our addition: ``w / mean(w)``, i.e. the self-normalised estimator
  ``sum(w l) / sum(w)``. It matches the raw loss up to the constant ``E[w]`` (plus an O(1/B)
  bias) and does not underflow when ``c / eps`` is large, which raw weights do in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from flowgen.errors import InputError

CouplingMethod = Literal["independent", "ot", "sinkhorn", "class_ot", "wcfm"]
METHODS: tuple[str, ...] = ("independent", "ot", "sinkhorn", "class_ot", "wcfm")

# eps = 5 was the best CIFAR-10 value in W-CFM's sweep; eps = kappa sqrt(d) with d = 3*32*32.
WCFM_KAPPA_DEFAULT: float = 5.0 / math.sqrt(3 * 32 * 32)


@dataclass(frozen=True)
class Coupled:
    """Row-paired minibatch for the CFM loss.

    Attributes:
        x_0: ``(B, ...)`` source (noise) samples, paired row-wise with ``x_1``.
        x_1: ``(B, ...)`` target (data) samples.
        labels: ``(B,)`` labels travelling with ``x_1`` (None if none were given).
        weights: ``(B,)`` per-pair loss weights (W-CFM), else None.
    """

    x_0: torch.Tensor
    x_1: torch.Tensor
    labels: torch.Tensor | None
    weights: torch.Tensor | None


# --- costs ------------------------------------------------------------------------------------
def _flat(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...) -> (B, D)`` in at least float32."""
    x = x.reshape(x.shape[0], -1)
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_pair(x_0: torch.Tensor, x_1: torch.Tensor, *, same_batch: bool = True) -> None:
    if x_0.ndim < 1 or x_1.ndim < 1:
        raise InputError("x_0 and x_1 must have a batch dimension, shape (B, ...)")
    if same_batch and x_0.shape[0] != x_1.shape[0]:
        raise InputError(
            f"x_0 and x_1 need the same batch size, got {x_0.shape[0]} and {x_1.shape[0]}; "
            "draw one noise sample per data sample"
        )
    if x_0.shape[1:] != x_1.shape[1:]:
        raise InputError(
            f"x_0 {tuple(x_0.shape)} and x_1 {tuple(x_1.shape)} must have the same sample shape"
        )
    if x_0.shape[0] == 0:
        raise InputError("the batch is empty; pass at least one sample")


def squared_cost(x_0: torch.Tensor, x_1: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` squared Euclidean costs ``||x_0[i] - x_1[j]||^2`` between flattened samples."""
    _check_pair(x_0, x_1, same_batch=False)
    a, b = _flat(x_0), _flat(x_1)
    dtype = torch.promote_types(a.dtype, b.dtype)
    cost = torch.cdist(a.to(dtype), b.to(dtype)).pow(2)
    if not torch.isfinite(cost).all():
        raise InputError("x_0 or x_1 holds non-finite values (NaN or inf); clean the batch first")
    return cost


# --- exact OT (POT) ---------------------------------------------------------------------------
def _emd(cost: torch.Tensor):
    """POT's network simplex on uniform marginals; returns the ``(N, M)`` numpy plan."""
    import numpy as np
    import ot

    c = cost.detach().to("cpu", torch.float64).numpy()
    n, m = c.shape
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    return ot.emd(a, b, c, numItermax=1_000_000)


def ot_plan(x_0: torch.Tensor, x_1: torch.Tensor) -> torch.Tensor:
    """Exact OT plan for uniform weights and squared Euclidean cost, from ``ot.emd``.

    Args:
        x_0: ``(N, ...)`` source samples.
        x_1: ``(M, ...)`` target samples of the same sample shape.

    Returns:
        ``(N, M)`` float64 plan on ``x_0``'s device, rows summing to ``1/N``, columns to ``1/M``.
    """
    plan = _emd(squared_cost(x_0, x_1))
    return torch.from_numpy(plan).to(x_0.device)


def exact_ot_permutation(x_0: torch.Tensor, x_1: torch.Tensor) -> torch.Tensor:
    """Permutation ``perm`` such that ``(x_0[i], x_1[perm[i]])`` is the exact OT pairing.

    Minimises ``sum_i ||x_0[i] - x_1[perm[i]]||^2`` (OT-CFM, Tong et al. 2024) via POT's
    ``ot.emd``; with equal sizes and uniform weights its vertex solution is a permutation matrix.

    Args:
        x_0: ``(B, ...)`` noise samples.
        x_1: ``(B, ...)`` data samples.

    Returns:
        ``(B,)`` int64 permutation on ``x_0``'s device.
    """
    _check_pair(x_0, x_1)
    if x_0.shape[0] == 1:
        return torch.zeros(1, dtype=torch.long, device=x_0.device)
    plan = _emd(squared_cost(x_0, x_1))
    perm = torch.from_numpy(plan.argmax(axis=1)).long()
    if torch.bincount(perm, minlength=perm.numel()).ne(1).any():  # never for a vertex solution
        raise RuntimeError("ot.emd returned a plan that is not a permutation; please report this")
    return perm.to(x_0.device)


def class_conditional_ot_permutation(
    x_0: torch.Tensor, x_1: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Exact OT within each label group (C2OT, arXiv 2503.10636, infinite condition weight).

    Row ``i`` keeps its label: ``x_1`` rows are permuted only among positions sharing a label,
    so that inside each group ``(x_0[i], x_1[perm[i]])`` is the exact OT pairing of that group.

    Args:
        x_0: ``(B, ...)`` noise samples.
        x_1: ``(B, ...)`` data samples.
        labels: ``(B,)`` labels of ``x_1``.

    Returns:
        ``(B,)`` int64 permutation with ``labels[perm] == labels``.
    """
    _check_pair(x_0, x_1)
    _check_labels(labels, x_1.shape[0])
    labels = labels.to(x_0.device)
    perm = torch.arange(x_0.shape[0], device=x_0.device)
    for c in torch.unique(labels):
        idx = (labels == c).nonzero(as_tuple=True)[0]  # (B_c,)
        perm[idx] = idx[exact_ot_permutation(x_0[idx], x_1[idx])]
    return perm


# --- entropic OT ------------------------------------------------------------------------------
def sinkhorn_plan(
    x_0: torch.Tensor,
    x_1: torch.Tensor,
    *,
    reg: float = 0.05,
    n_iters: int = 200,
    normalize_cost: bool = True,
) -> torch.Tensor:
    """Entropic OT plan with uniform marginals, log-domain Sinkhorn in pure torch.

    Solves ``min_P <P, C> - reg H(P)`` (Cuturi 2013) by alternating the dual updates
    ``g = reg log b - reg LSE_i((f_i - C_ij) / reg)`` and
    ``f = reg log a - reg LSE_j((g_j - C_ij) / reg)``; ``P = exp((f_i + g_j - C_ij) / reg)``.
    The update order is POT's ``ot.sinkhorn`` (column scaling, then row), so rows are exact.
    Runs on the inputs' device in their float dtype (half precision is computed in float32).

    Args:
        x_0: ``(N, ...)`` source samples.
        x_1: ``(M, ...)`` target samples of the same sample shape.
        reg: entropic regularisation, relative to the cost (to ``C / max C`` when normalised).
        n_iters: number of Sinkhorn iterations (each updates both potentials).
        normalize_cost: divide the squared Euclidean cost by its maximum, as torchcfm does.

    Returns:
        ``(N, M)`` plan; rows sum to ``1/N``, columns to ``1/M`` once converged.
    """
    if not reg > 0:
        raise InputError(f"sinkhorn reg must be > 0, got {reg}")
    if n_iters < 1:
        raise InputError(f"n_iters must be >= 1, got {n_iters}")
    cost = squared_cost(x_0, x_1)  # (N, M)
    if normalize_cost:
        cost = cost / cost.max().clamp_min(torch.finfo(cost.dtype).tiny)
    n, m = cost.shape
    log_a, log_b = -math.log(n), -math.log(m)
    log_k = -cost / reg  # (N, M) log Gibbs kernel; u = f / reg and v = g / reg below
    u = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    v = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    for _ in range(n_iters):
        v = log_b - torch.logsumexp(u[:, None] + log_k, dim=0)
        u = log_a - torch.logsumexp(v[None, :] + log_k, dim=1)
    return torch.exp(u[:, None] + v[None, :] + log_k)


def sample_plan(
    plan: torch.Tensor,
    n: int,
    *,
    generator: torch.Generator | None = None,
    replace: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` index pairs ``(i, j)`` with probability proportional to ``plan[i, j]``.

    Args:
        plan: ``(N, M)`` non-negative coupling (need not be normalised).
        n: number of pairs to draw.
        generator: random generator on ``plan``'s device.
        replace: draw with replacement (torchcfm's default).

    Returns:
        ``(i, j)``, two ``(n,)`` int64 tensors on ``plan``'s device.
    """
    if plan.ndim != 2 or plan.numel() == 0:
        raise InputError(f"plan must be a non-empty (N, M) matrix, got shape {tuple(plan.shape)}")
    if plan.numel() > 2**24:
        raise InputError("plan has more than 2**24 entries (torch.multinomial's limit); split it")
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    if not torch.isfinite(plan).all() or (plan < 0).any() or plan.sum() <= 0:
        raise InputError("plan must be finite, non-negative and have a positive sum")
    p = plan.reshape(-1)  # (N * M,)
    if p.dtype not in (torch.float32, torch.float64):
        p = p.float()
    if not replace and n > int((p > 0).sum()):
        raise InputError(
            f"cannot draw {n} distinct pairs from {int((p > 0).sum())} nonzero entries"
        )
    flat = torch.multinomial(p, n, replacement=replace, generator=generator)  # (n,)
    return flat // plan.shape[1], flat % plan.shape[1]


# --- W-CFM ------------------------------------------------------------------------------------
def wcfm_epsilon(dim: int, kappa: float = WCFM_KAPPA_DEFAULT) -> float:
    """W-CFM's high-dimensional heuristic ``eps = kappa sqrt(d)`` (arXiv 2507.22270).

    Args:
        dim: number of elements per sample ``d``.
        kappa: scale; the default reproduces the paper's best CIFAR-10 ``eps = 5``.
    """
    if dim < 1:
        raise InputError(f"dim must be >= 1, got {dim}")
    if not kappa > 0:
        raise InputError(f"kappa must be > 0, got {kappa}")
    return kappa * math.sqrt(dim)


def wcfm_weights(
    x_0: torch.Tensor,
    x_1: torch.Tensor,
    *,
    eps: float | None = None,
    kappa: float = WCFM_KAPPA_DEFAULT,
    normalize: Literal["none", "batch"] = "none",
    cost: Literal["distance", "squared"] = "distance",
) -> torch.Tensor:
    """Gibbs weights ``w_i = exp(-c(x_0[i], x_1[i]) / eps)`` of independent pairs (W-CFM).

    Args:
        x_0: ``(B, ...)`` noise samples.
        x_1: ``(B, ...)`` data samples, paired row-wise with ``x_0``.
        eps: temperature; ``None`` uses ``kappa sqrt(d)`` with ``d`` elements per sample.
        kappa: scale of the ``eps`` heuristic when ``eps`` is None.
        normalize: ``"none"`` gives the paper's raw weights (may underflow to 0 when
            ``c / eps`` exceeds ~87 in float32); ``"batch"`` rescales to ``mean(w) == 1``,
            computed as ``B softmax(-c / eps)`` so it never underflows to all zeros.
        cost: ``"distance"`` ``||x_0 - x_1||`` (what the paper uses, see module docstring) or
            ``"squared"`` ``||x_0 - x_1||^2``.

    Returns:
        ``(B,)`` weights (no gradient), in the inputs' float dtype (at least float32).
    """
    _check_pair(x_0, x_1)
    if eps is None:
        eps = wcfm_epsilon(x_1[0].numel(), kappa)
    if not eps > 0:
        raise InputError(f"W-CFM eps must be > 0, got {eps}")
    if normalize not in ("none", "batch"):
        raise InputError(f"normalize must be 'none' or 'batch', got {normalize!r}")
    if cost not in ("distance", "squared"):
        raise InputError(f"cost must be 'distance' or 'squared', got {cost!r}")
    diff = _flat(x_0.detach()) - _flat(x_1.detach())  # (B, D)
    c = diff.pow(2).sum(1)
    if cost == "distance":
        c = c.sqrt()
    if not torch.isfinite(c).all():
        raise InputError("x_0 or x_1 holds non-finite values (NaN or inf); clean the batch first")
    log_w = -c / eps  # (B,)
    if normalize == "batch":
        return torch.softmax(log_w, dim=0) * log_w.shape[0]
    return log_w.exp()


def effective_sample_size(weights: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of ``(B,)`` weights.

    It is ``B`` for equal weights and 1 when one weight holds all the mass; returned as a 0-d
    tensor on the weights' device (``float(ess)`` for logging).
    """
    if weights.ndim != 1 or weights.numel() == 0:
        raise InputError(f"weights must have shape (B,), got {tuple(weights.shape)}")
    w = weights.double()
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError("weights must be finite, non-negative and not all zero")
    w = w / w.max()  # scale-free; avoids overflow of sum(w^2)
    return w.sum().pow(2) / w.pow(2).sum()


# --- entry point ------------------------------------------------------------------------------
def _check_labels(labels: torch.Tensor, batch: int) -> None:
    if not torch.is_tensor(labels) or labels.shape != (batch,):
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise InputError(f"labels must be a tensor of shape ({batch},), got {shape}")


def couple(
    x_0: torch.Tensor,
    x_1: torch.Tensor,
    method: CouplingMethod,
    *,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    sinkhorn_reg: float = 0.05,
    wcfm_eps: float | None = None,
    wcfm_kappa: float = WCFM_KAPPA_DEFAULT,
    wcfm_normalize: Literal["none", "batch"] = "batch",
) -> Coupled:
    """Pair a noise batch with a data batch by ``method`` (see the module docstring).

    Args:
        x_0: ``(B, ...)`` noise samples.
        x_1: ``(B, ...)`` data samples.
        method: ``"independent"``, ``"ot"``, ``"sinkhorn"``, ``"class_ot"`` or ``"wcfm"``.
        labels: ``(B,)`` labels of ``x_1``; they follow ``x_1``. Required by ``"class_ot"``.
        generator: random generator (on the batch's device) for ``"sinkhorn"`` resampling.
        sinkhorn_reg: entropic regularisation for ``"sinkhorn"`` (on the max-normalised cost).
        wcfm_eps: W-CFM temperature; None uses ``wcfm_kappa * sqrt(d)``.
        wcfm_kappa: scale of the W-CFM ``eps`` heuristic.
        wcfm_normalize: ``"batch"`` (weights average 1) or ``"none"`` (the paper's raw weights).

    Returns:
        :class:`Coupled` with rows paired; ``weights`` is set only by ``"wcfm"``.
    """
    if method not in METHODS:
        raise InputError(f"unknown coupling method {method!r}; choose one of {', '.join(METHODS)}")
    _check_pair(x_0, x_1)
    if labels is not None:
        _check_labels(labels, x_1.shape[0])
    if method == "independent":
        return Coupled(x_0=x_0, x_1=x_1, labels=labels, weights=None)
    if method == "wcfm":
        w = wcfm_weights(x_0, x_1, eps=wcfm_eps, kappa=wcfm_kappa, normalize=wcfm_normalize)
        return Coupled(x_0=x_0, x_1=x_1, labels=labels, weights=w)
    if method == "sinkhorn":
        plan = sinkhorn_plan(x_0, x_1, reg=sinkhorn_reg)
        i, j = sample_plan(plan, x_0.shape[0], generator=generator, replace=True)
        y = None if labels is None else labels[j.to(labels.device)]
        return Coupled(x_0=x_0[i], x_1=x_1[j], labels=y, weights=None)
    if method == "class_ot":
        if labels is None:
            raise InputError("method 'class_ot' needs labels; pass labels=(B,) or use 'ot'")
        perm = class_conditional_ot_permutation(x_0, x_1, labels)
    else:  # "ot"
        perm = exact_ot_permutation(x_0, x_1)
    y = None if labels is None else labels[perm.to(labels.device)]
    return Coupled(x_0=x_0, x_1=x_1[perm], labels=y, weights=None)
