"""Honest verdicts: is the model sure, unsure, or looking at something that is not a pet?

A softmax always sums to one, so a classifier of 37 breeds gives a breed, often with a
high probability, to a photo of a receipt. Two separate questions get two separate
scores:

- **Is this a pet at all?** An out-of-distribution (OOD) score, higher = stranger:
  ``mahalanobis`` (the default), the distance of the penultimate features (ResNet's
  pooled 512 numbers, scaled to unit length) to the nearest breed mean under one
  shared covariance (Lee et al., 2018), or ``energy``, minus the logsumexp of the
  logits (Liu et al., 2020). The threshold keeps ``keep`` (95 %) of the validation
  images: by construction about 5 % of real pets are refused, and what is refused
  beyond that is measured on non-pets.
- **Is the breed right?** The top probability against ``probability_threshold``: 0.5,
  raised to the point below which validation predictions are mostly wrong (see
  :func:`probability_threshold`). Below it the site says "Not sure: maybe A or B".

The default was picked by measurement on generated pets and non-pets (noise,
gradients, clip art, text; ``ml.synthetic``), with ten ResNet34s trained from scratch
at 32 px: AUROC, and the share of non-pets refused at 95 % of pets kept.

=========================  ===================  ===================  ===================
validation images / breed  8 (3 models)         13 (5 models)        20 (2 models)
=========================  ===================  ===================  ===================
energy                     0.966-0.974, 81-87%  0.979-0.991, 85-96%  0.989-0.993, 95-97%
Mahalanobis, raw features  0.869-0.930, 24-64%  0.945-0.964, 52-81%  0.973, 85-86%
Mahalanobis, unit length   0.966-0.985, 75-94%  0.988-0.994, 92-98%  0.994-0.997, 98-99%
=========================  ===================  ===================  ===================

Mahalanobis on raw features loses to energy everywhere: the length of a feature vector
varies with contrast and size, while what tells breeds apart is its direction. On
unit-length features it beat energy in every model with 13 or more validation images
per breed (the real dataset's validation split has about 20); with 8, energy was as
good or better. Energy stays available (``ood_score``, :func:`with_ood_score`: both
thresholds are stored), and ``tests/ml/test_calibration.py`` measures both on every
slow run.

Mahalanobis statistics fitted on the very images whose scores set the threshold put
those images closer to their means than new images ever are (512 dimensions, a few
hundred images): such a threshold kept 2-8 % of new pets instead of 95 %. So the
threshold comes from *out-of-fold* scores: each fold is scored with means and
covariance fitted on the other folds. The stored statistics use every image.

Everything stored is a tensor, a float, an int, a string, a list or a dict: the
checkpoint loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch

from .breeds import CONFIDENT, NOT_A_PET, UNSURE, VERDICTS  # noqa: F401  the verdicts, defined once (no torch)

# The out-of-distribution scores (higher = less like the training data).
MAHALANOBIS = "mahalanobis"
ENERGY = "energy"
OOD_SCORES = (MAHALANOBIS, ENERGY)
DEFAULT_OOD_SCORE = MAHALANOBIS

DEFAULT_KEEP = 0.95
DEFAULT_PROBABILITY_THRESHOLD = 0.5
CALIBRATION_VERSION = 1


# --- out-of-distribution scores --------------------------------------------------------------

def unit_length(features: torch.Tensor) -> torch.Tensor:
    """Features scaled to length one, what the Mahalanobis statistics are fitted on:
    on raw features they refused far fewer non-pets (module docstring)."""
    return torch.nn.functional.normalize(features.float(), dim=1)


def energy_score(logits: torch.Tensor) -> torch.Tensor:
    """Minus the logsumexp of the logits per row: low for inputs like the training data."""
    return -torch.logsumexp(logits.double(), dim=1).float()


def class_means(features: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean feature vector per class (zeros for a class without images), float64."""
    features = features.double()
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64).index_add_(0, targets, features)
    counts = torch.bincount(targets, minlength=num_classes).clamp(min=1).double()
    return sums / counts[:, None]


def shrunk_covariance(centred: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(covariance, shrinkage) of rows already centred on their class means (Ledoit-Wolf).

    With fewer images than dimensions the sample covariance is singular; Ledoit and
    Wolf's estimate blends it with a multiple of the identity, ``(1 - s) S + s mu I``,
    choosing ``s`` from the data (no parameter to tune): little shrinkage with many
    images, much with few. Same formula as scikit-learn's ``ledoit_wolf``.
    """
    x = centred.double()
    n, d = x.shape
    sample = x.T @ x / n
    mu = torch.trace(sample) / d
    delta = ((sample - mu * torch.eye(d, dtype=x.dtype)) ** 2).sum() / d
    # Mean over images of ||x x^T - S||_F^2, without forming n d-by-d matrices.
    squared_norms = (x * x).sum(dim=1)
    beta = (squared_norms ** 2).sum() - 2 * ((x @ sample) * x).sum() + n * (sample ** 2).sum()
    beta = torch.minimum(beta / (n * n * d), delta)
    shrinkage = (beta / delta).item() if delta > 0 else 1.0
    covariance = (1 - shrinkage) * sample + shrinkage * mu * torch.eye(d, dtype=x.dtype)
    return covariance, shrinkage


def fit_gaussian(
    features: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(class means, shared precision matrix, shrinkage), float64.

    One covariance for all classes ("tied", as in linear discriminant analysis): with
    10-20 validation images per breed a covariance per class is out of the question.
    """
    means = class_means(features, targets, num_classes)
    covariance, shrinkage = shrunk_covariance(features.double() - means[targets])
    # A constant feature (a dead unit) would leave the covariance singular even after
    # shrinkage when everything else is zero; a tiny ridge keeps the inverse finite.
    ridge = 1e-6 * max(torch.diagonal(covariance).mean().item(), 1e-12)
    precision = torch.linalg.inv(covariance + ridge * torch.eye(covariance.shape[0], dtype=covariance.dtype))
    return means, (precision + precision.T) / 2, shrinkage


def mahalanobis_score(features: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distance of each row of ``features`` to the nearest class mean."""
    f = features.double()
    means = means.double()
    precision = precision.double()
    fp = f @ precision
    squared = (fp * f).sum(1, keepdim=True) - 2 * fp @ means.T + ((means @ precision) * means).sum(1)
    return squared.clamp(min=0).min(dim=1).values.sqrt().float()


def _folds(targets: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """A fold number per image, each class dealt round-robin over the folds (stratified)."""
    generator = torch.Generator().manual_seed(seed)
    fold = torch.empty_like(targets)
    for label in targets.unique():
        members = (targets == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        fold[members] = torch.arange(len(members)) % k
    return fold


def out_of_fold_mahalanobis(
    features: torch.Tensor, targets: torch.Tensor, num_classes: int, folds: int = 5, seed: int = 0
) -> torch.Tensor:
    """Each image's Mahalanobis score under statistics fitted without it (module docstring)."""
    fold = _folds(targets, folds, seed)
    scores = torch.empty(len(targets))
    for f in range(folds):
        held_out = fold == f
        if not held_out.any():
            continue
        if held_out.all():  # every class has a single image: nothing else to fit on
            held_out = torch.zeros_like(held_out)
            means, precision, _ = fit_gaussian(features, targets, num_classes)
            return mahalanobis_score(features, means, precision)
        means, precision, _ = fit_gaussian(features[~held_out], targets[~held_out], num_classes)
        # A class with no image outside this fold has a zero mean: leave it out of "nearest".
        present = torch.bincount(targets[~held_out], minlength=num_classes) > 0
        scores[held_out] = mahalanobis_score(features[held_out], means[present], precision)
    return scores


def auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Probability that a random out-of-distribution image scores above a random in-distribution
    one (ties count half): 1.0 separates perfectly, 0.5 is chance."""
    a, b = in_scores.double().flatten(), out_scores.double().flatten()
    greater = (b[:, None] > a[None, :]).double().sum()
    ties = (b[:, None] == a[None, :]).double().sum()
    return ((greater + 0.5 * ties) / (len(a) * len(b))).item()


# --- the probability threshold ----------------------------------------------------------------

def probability_threshold(
    top_probability: torch.Tensor, correct: torch.Tensor, floor: float = DEFAULT_PROBABILITY_THRESHOLD
) -> float:
    """Where "unsure" starts: ``floor`` (0.5), or higher where validation says so.

    0.5 is the natural floor: below it the model itself gives the other breeds together
    more weight than its first choice. Above it, the threshold is the one that makes the
    fewest mistakes on validation, counting a wrong prediction called confident and a
    right one called unsure alike. At that threshold the predictions just below it are
    wrong at least as often as right ("mostly wrong"), and a model whose errors all sit
    below 0.5 keeps 0.5. Ties go to the lowest threshold.
    """
    p = top_probability.double()
    correct = correct.bool()
    candidates = torch.cat([torch.tensor([floor], dtype=p.dtype), p[p > floor].unique()])
    # cost(t) = right below t + wrong at or above t.
    below = p[None, :] < candidates[:, None]
    cost = (below & correct).sum(1) + (~below & ~correct).sum(1)
    return float(candidates[int(torch.argmin(cost))])


# --- fitting and applying --------------------------------------------------------------------

def _threshold_keeping(scores: torch.Tensor, keep: float) -> float:
    """The smallest score at or under which at least ``keep`` of ``scores`` lie."""
    ordered = scores.double().sort().values
    index = min(len(ordered) - 1, max(0, math.ceil(keep * len(ordered)) - 1))
    return float(ordered[index])


def _count(verdicts: list[str]) -> dict[str, int]:
    return {name: verdicts.count(name) for name in VERDICTS}


def fit_calibration(
    features: torch.Tensor,
    logits: torch.Tensor,
    targets: torch.Tensor,
    keep: float = DEFAULT_KEEP,
    *,
    ood_score: str = DEFAULT_OOD_SCORE,
    probability_floor: float = DEFAULT_PROBABILITY_THRESHOLD,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The verdict thresholds and Mahalanobis statistics, fitted on validation outputs.

    ``features`` (N x D penultimate features), ``logits`` (N x C) and ``targets`` (N)
    come from one pass over the validation images (:func:`ml.model.features_and_logits`). The
    result goes into the checkpoint as its ``calibration``; :func:`verdicts` applies it.
    Its ``"validation"`` entry tells how the validation images fare, with out-of-fold
    Mahalanobis scores (what a new image would get).
    """
    if ood_score not in OOD_SCORES:
        raise ValueError(f"unknown OOD score {ood_score!r}; expected one of {OOD_SCORES}")
    if not 0.0 < keep <= 1.0:
        raise ValueError("keep must be in (0, 1].")
    features = unit_length(features.detach().cpu())
    logits, targets = logits.detach().float().cpu(), targets.long().cpu()
    num_classes = logits.shape[1]
    folds = max(2, min(folds, len(targets)))
    scores = {
        MAHALANOBIS: out_of_fold_mahalanobis(features, targets, num_classes, folds, seed),
        ENERGY: energy_score(logits),
    }
    thresholds = {name: _threshold_keeping(s, keep) for name, s in scores.items()}
    top = logits.softmax(dim=1).max(dim=1)
    correct = top.indices == targets
    p_threshold = probability_threshold(top.values, correct, probability_floor)
    means, precision, shrinkage = fit_gaussian(features, targets, num_classes)

    calibration = {
        "version": CALIBRATION_VERSION,
        "ood_score": ood_score,
        "ood_threshold": thresholds[ood_score],
        "ood_thresholds": thresholds,
        "probability_threshold": p_threshold,
        "keep": float(keep),
        "features": "unit_length",  # what the Mahalanobis statistics were fitted on
        "class_means": means.float().contiguous(),
        "precision": precision.float().contiguous(),
        "shrinkage": float(shrinkage),
        "num_images": len(targets),
    }
    names = [
        NOT_A_PET if s > thresholds[ood_score] else CONFIDENT if p >= p_threshold else UNSURE
        for s, p in zip(scores[ood_score].tolist(), top.values.tolist(), strict=True)
    ]
    calibration["validation"] = verdict_report(names, correct)
    return calibration


def verdict_report(names: list[str], correct: torch.Tensor) -> dict[str, Any]:
    """How many images got each verdict, and how often the top-1 breed was right within each
    (``None`` for a verdict nobody got): a probability threshold that works leaves few
    right answers among the unsure."""
    correct = correct.bool().tolist()
    return {
        "verdicts": _count(names),
        "accuracy": {
            name: (sum(c for n, c in zip(names, correct, strict=True) if n == name) / names.count(name)
                   if name in names else None)
            for name in VERDICTS
        },
    }


def summary(calibration: Mapping[str, Any]) -> dict[str, Any]:
    """The calibration's numbers without its tensors: for metrics.json and log lines."""
    return {k: v for k, v in calibration.items() if not isinstance(v, torch.Tensor)}


def with_ood_score(calibration: Mapping[str, Any], ood_score: str) -> dict[str, Any]:
    """A copy of ``calibration`` that decides not-a-pet with ``ood_score`` and its own threshold."""
    if ood_score not in calibration.get("ood_thresholds", {}):
        raise ValueError(f"this calibration has no threshold for {ood_score!r}")
    return {**calibration, "ood_score": ood_score, "ood_threshold": calibration["ood_thresholds"][ood_score]}


def has_ood(calibration: Mapping[str, Any]) -> bool:
    """Whether ``calibration`` can say "not a pet" (older checkpoints have none)."""
    return bool(calibration) and "ood_threshold" in calibration and (
        calibration.get("ood_score") == ENERGY or "class_means" in calibration
    )


def ood_scores(calibration: Mapping[str, Any], features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The calibration's OOD score of each image."""
    if calibration["ood_score"] == ENERGY:
        return energy_score(logits.float())
    if calibration.get("features") == "unit_length":
        features = unit_length(features)
    return mahalanobis_score(features, calibration["class_means"], calibration["precision"])


class Verdict(NamedTuple):
    verdict: str  # CONFIDENT, UNSURE or NOT_A_PET
    scores: dict[str, Any]  # what led to it, plain JSON types (see verdicts())


def verdicts(
    calibration: Mapping[str, Any], logits: torch.Tensor, features: torch.Tensor | None = None
) -> list[Verdict]:
    """The verdict of each image from its logits (and penultimate features), with its reasons.

    ``scores`` holds ``top_probability`` and ``probability_threshold``, and
    ``ood_method``, ``ood_score`` and ``ood_threshold`` (all ``None`` when the
    calibration has no OOD part: a checkpoint from before calibration gets confident or
    unsure from the probability alone, never not-a-pet). Not-a-pet wins over the rest.
    """
    logits = logits.detach().float().cpu()
    top = logits.softmax(dim=1).max(dim=1).values.tolist()
    p_threshold = float(calibration.get("probability_threshold", DEFAULT_PROBABILITY_THRESHOLD))
    method = threshold = None
    ood: list[float | None] = [None] * len(top)
    if has_ood(calibration) and (features is not None or calibration["ood_score"] == ENERGY):
        method, threshold = calibration["ood_score"], float(calibration["ood_threshold"])
        feats = features.detach().float().cpu() if features is not None else None
        ood = ood_scores(calibration, feats, logits).tolist()
    results = []
    for p, score in zip(top, ood, strict=True):
        if score is not None and score > threshold:
            name = NOT_A_PET
        else:
            name = CONFIDENT if p >= p_threshold else UNSURE
        results.append(Verdict(name, {
            "top_probability": p, "probability_threshold": p_threshold,
            "ood_method": method, "ood_score": score, "ood_threshold": threshold,
        }))
    return results
