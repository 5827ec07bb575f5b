"""One entry for training: :func:`run` runs a recipe from one configuration.

The ``train`` command and the site's training runs both call :func:`run` with the recipe
they were asked for (``full``, ``quick`` or ``auto``) and one ``ml.config.RunConfig``;
:func:`choose_recipe` resolves ``auto`` (quick on a CPU, full on a CUDA GPU), and the
recipe's module (``ml.recipes.full``, ``ml.recipes.quick``) does the rest. The modules
depend one way: ``config`` <- ``training`` (the shared loop) <- ``outputs`` (the run's
end) <- ``recipes.full``, ``recipes.quick`` <- ``runs``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from .config import FULL, QUICK, RECIPES, RunConfig
from .outputs import RunResult
from .progress import Progress
from .recipes.full import run_full
from .recipes.quick import run_quick
from .training import Log, resolve_device

RUNNERS = {FULL: run_full, QUICK: run_quick}


def choose_recipe(recipe: str, device: torch.device) -> tuple[str, str]:
    """(recipe to run, why): ``auto`` is quick on a CPU and full on a CUDA GPU."""
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")
    if recipe != "auto":
        return recipe, f"--recipe {recipe}"
    if device.type == "cuda":
        return FULL, "--recipe auto on a CUDA GPU: the full fine-tune of every layer"
    return QUICK, (
        f"--recipe auto on a {device.type.upper()} without a GPU: cached body features and a new head, "
        "minutes instead of an hour (--recipe full fine-tunes every layer)"
    )


def run(
    recipe: str,
    config: RunConfig,
    out_dir: str | os.PathLike,
    *,
    log: Log = print,
    on_progress: Progress | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run ``recipe`` (``full``, ``quick`` or ``auto``) with ``config`` into ``out_dir``.

    Logs which recipe runs and why, then calls ``on_start`` (if given) with the run's
    settings before any work: ``config.to_dict(recipe)`` plus ``"recipe"`` and ``"why"``
    (the site shows them while the run goes on). Raises ``ValueError`` for an unknown
    recipe and ``RuntimeError`` for ``--device cuda`` without a GPU; everything else is
    the recipe's (``ml.recipes.full.run_full``, ``ml.recipes.quick.run_quick``).
    """
    chosen, why = choose_recipe(recipe, resolve_device(config.device))
    log(f"Recipe: {chosen} ({why}).")
    if on_start is not None:
        on_start({**config.to_dict(chosen), "recipe": chosen, "why": why})
    return RUNNERS[chosen](config, out_dir, log=log, on_progress=on_progress)
