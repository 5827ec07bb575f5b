"""Which model and which machine: the keys that a measured choice (``ml.backends``,
``ml.precision``) and a cached export (``ml.onnx_export``) are stored under.

A choice measured on one CPU says nothing about another (AVX2 alone, AVX-512 BF16, AMX),
nor about other weights, another torch, or another number of threads: each goes into the key.
"""
from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# The CPU flags that decide which backend wins, reported by the benchmark and the choice.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# Native BF16 arithmetic: without one of these a CPU emulates BF16, slower than FP32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def weights_key(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A SHA-256 of the weights (names, dtypes, shapes and bytes): changes with any weight."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def cpu_info() -> dict[str, Any]:
    """The CPU model, all its flags (Linux ``/proc/cpuinfo``; elsewhere what ``platform`` knows)
    and torch's view of it (its best vector instruction set)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = sorted(set(value.split()))
    except OSError:
        pass
    return {
        "model": model,
        "flags": flags,
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def cpu_flags(info: Mapping[str, Any] | None = None) -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` this CPU has."""
    flags = set((info or cpu_info())["flags"])
    return {flag: flag in flags for flag in CPU_FLAGS}


def machine_key(device: torch.device | str = "cpu", cpu: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a measured choice depends on besides the model: CPU, flags, torch, threads, GPU.
    ``cpu``: a :func:`cpu_info` (default: this machine's)."""
    info = cpu or cpu_info()
    key = {
        "cpu": info["model"],
        "cpu_flags_sha256": hashlib.sha256(" ".join(info["flags"]).encode()).hexdigest()[:16],
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "device": str(torch.device(device)),
    }
    if torch.device(device).type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return key


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "petsite"

