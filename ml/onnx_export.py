"""The model as an ONNX file, for ONNX Runtime (``ml.backends.OnnxBackend``).

The file holds :func:`ml.model.features_and_logits` (inputs ``images``, outputs ``features``
and ``logits``) and is cached in ``cache_dir/onnx/`` under the weights' hash and the torch
version (:func:`onnx_path`). Exporting takes 8 s on two idle cores and minutes on busy ones,
so it is done once per model and machine, off the path of a user's photo (``ml.warmup``),
and in a child process (:func:`export_onnx_in_subprocess`: the exporter keeps memory).
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from .files import atomic_path
from .machine import default_cache_dir, weights_key
from .model import features_and_logits


class _Features(nn.Module):
    """:func:`ml.model.features_and_logits` as a module, for the exporter."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return features_and_logits(self.model, images)


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """``model`` as one self-contained ONNX file: input ``images`` (N x 3 x H x W, any N, H and
    W: ResNet pools adaptively), outputs ``features`` and ``logits``. Written atomically: a
    half-written file is never read.

    The dynamo exporter (``torch.export`` + onnxscript), torch's default since 2.9; the
    TorchScript one is deprecated. Weights are stored inside the file (ResNet34 is 85 MB,
    far below protobuf's 2 GB limit), so the cache holds one file per model.
    """
    wrapped = _Features(model).eval()
    device = next(model.parameters()).device
    example = torch.zeros(2, 3, 64, 64, device=device)
    dims = {0: torch.export.Dim("batch", min=1, max=4096),
            2: torch.export.Dim("height", min=32, max=4096), 3: torch.export.Dim("width", min=32, max=4096)}
    # The exporter's passes log every rewrite at INFO: a worker's log would be all export.
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.WARNING)
    try:
        program = torch.onnx.export(
            wrapped, (example,), input_names=["images"], output_names=["features", "logits"],
            dynamic_shapes=(dims,), dynamo=True, verbose=False,
        )
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)
    return Path(path)


def export_onnx_in_subprocess(model: nn.Module, path: str | os.PathLike, timeout: float = 600) -> Path:
    """:func:`export_onnx` in a child process (``python -m ml.onnx_export``).

    The exporter (torch.export, onnxscript's passes) leaves ~400 MiB behind in the process
    that runs it, for good: a worker child would carry it for its whole life. Seconds more
    (the child imports torch) once per model and machine.
    """
    with tempfile.TemporaryDirectory(prefix="petsite-onnx-") as tmp:
        module_file = Path(tmp) / "model.pt"
        torch.save(model, module_file)  # the whole module: architecture and weights
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        # Safe to run (the noqa below): a fixed argv, this interpreter on our own module and temporary files.
        done = subprocess.run([sys.executable, "-m", "ml.onnx_export", "export", str(module_file), str(path)],  # noqa: S603
                              cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the ONNX export failed: {done.stderr.strip()[-1000:]}")
    return Path(path)


def onnx_path(model: nn.Module, cache_dir: str | os.PathLike | None = None, model_key: str | None = None) -> Path:
    """Where the export of ``model`` is cached: keyed by its weights (``model_key``, default
    :func:`weights_key` of them) and the torch version (another exporter may write another graph)."""
    model_key = model_key or weights_key(model.state_dict())
    key = hashlib.sha256(f"{model_key}|{torch.__version__}".encode()).hexdigest()[:24]
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "onnx" / f"{key}.onnx"


if __name__ == "__main__":  # python -m ml.onnx_export export MODULE_FILE OUT.onnx (export_onnx_in_subprocess)
    _, command, module_file, out = sys.argv
    if command != "export":
        raise SystemExit(f"unknown command {command!r}: python -m ml.onnx_export export MODULE_FILE OUT.onnx")
    export_onnx(torch.load(module_file, weights_only=False).eval(), out)
