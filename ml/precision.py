"""Mixed precision for training: which autocast type a run uses, chosen by measurement.

==========  ==========================================================================
``fp32``    no autocast: the reference, and the choice on CPUs without native BF16
``bf16``    ``torch.autocast(bfloat16)`` and channels_last; no loss scaling needed (BF16
            has FP32's range). Native on CPUs with AVX-512 BF16 or AMX, emulated (slow)
            elsewhere; on GPUs that support it
``fp16``    ``torch.autocast(float16)`` + ``GradScaler`` and channels_last: CUDA only
``auto``    CUDA: ``fp16`` (as before). CPU: ``bf16`` if the CPU has ``avx512_bf16`` or
            ``amx_bf16`` *and* a short measured check (a few forward + backward passes
            of the model on a copy, at the run's image and batch size) shows it faster
            than FP32; otherwise ``fp32``
==========  ==========================================================================

Nothing is assumed from the flags alone: oneDNN's BF16 kernels win on some shapes and
lose on others (tiny images, small batches). The measured choice is kept per process
(device, threads, image and batch size), so two runs in one process train alike, and it
is logged: a run can be repeated exactly by passing the precision it used.
"""
from __future__ import annotations

import copy
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .machine import cpu_flags

AUTO, FP32, BF16, FP16 = "auto", "fp32", "bf16", "fp16"
PRECISIONS = (AUTO, FP32, BF16, FP16)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_SPEEDUP = 1.05  # BF16 must beat FP32 by this much on a CPU: a tie keeps FP32's exactness
REPEATS = 2  # timed steps of each type, after one warm-up step each

_measured: dict[tuple, float] = {}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype to autocast to (None: FP32, no autocast)."""
    return {FP32: None, BF16: torch.bfloat16, FP16: torch.float16}[precision]


def uses_channels_last(precision: str, device: torch.device) -> bool:
    """oneDNN's BF16 and cuDNN's mixed-precision convolutions are fastest in NHWC."""
    return device.type == "cuda" or precision == BF16


def cpu_has_native_bf16() -> bool:
    flags = cpu_flags()
    return any(flags.get(flag) for flag in BF16_CPU_FLAGS)


def bf16_speedup(model: nn.Module, image_size: int, batch_size: int, device: torch.device,
                 repeats: int = REPEATS, on_step: Callable[[int, int], None] | None = None) -> float:
    """FP32 time / BF16 time of forward + backward on a copy of ``model`` (random inputs,
    alternating, median of ``repeats``). Touches neither ``model`` nor any global RNG.
    ``on_step(done, steps)`` after each step (a training run's progress)."""
    key = (str(device), torch.get_num_threads(), image_size, batch_size)
    if key in _measured:
        return _measured[key]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    targets = torch.randint(0, 2, (batch_size,), generator=generator).to(device)
    fp32_model = copy.deepcopy(model).to(device).train()
    bf16_model = copy.deepcopy(model).to(device).to(memory_format=torch.channels_last).train()
    bf16_images = images.contiguous(memory_format=torch.channels_last)

    steps = [0, 2 + 2 * repeats]

    def step(m: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> float:
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(m(x), targets)
        loss.backward()
        m.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        steps[0] += 1
        if on_step is not None:
            on_step(*steps)
        return seconds

    times: dict[str, list[float]] = {FP32: [], BF16: []}
    with torch.random.fork_rng(devices=[]):
        step(fp32_model, images, None)  # warm-up: oneDNN builds its kernels for these shapes
        step(bf16_model, bf16_images, torch.bfloat16)
        for _ in range(repeats):
            times[FP32].append(step(fp32_model, images, None))
            times[BF16].append(step(bf16_model, bf16_images, torch.bfloat16))
    speedup = statistics.median(times[FP32]) / statistics.median(times[BF16])
    _measured[key] = speedup
    return speedup


def resolve_precision(
    precision: str,
    device: torch.device,
    model: nn.Module,
    image_size: int,
    batch_size: int,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, int], None] | None = None,
) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``precision`` (one of :data:`PRECISIONS`) on
    ``device``; ``auto`` measures on a CPU (see the module docstring; ``on_step`` as in
    :func:`bf16_speedup`). Logs the choice."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    cuda = device.type == "cuda"
    if precision == FP16 and not cuda:
        raise ValueError("FP16 mixed precision needs a CUDA GPU; use --precision bf16 or fp32 on a CPU.")
    if precision != AUTO:
        log(f"precision {precision} (asked for)")
        return precision
    if cuda:
        log("precision fp16 (auto: float16 autocast and loss scaling on CUDA)")
        return FP16
    if not cpu_has_native_bf16():
        log("precision fp32 (auto: this CPU has no avx512_bf16 or amx_bf16; BF16 would be emulated)")
        return FP32
    batch = _measured_batch(batch_size)
    speedup = bf16_speedup(model, image_size, batch, device, on_step=on_step)
    chosen = BF16 if speedup >= MIN_SPEEDUP else FP32
    log(f"precision {chosen} (auto: BF16 autocast measured {speedup:.2f}x FP32 per training step at "
        f"{image_size} px, batch {batch}; BF16 needs {MIN_SPEEDUP:.2f}x)")
    return chosen


def _measured_batch(batch_size: int) -> int:
    return max(2, min(batch_size, 8))


def steps_to_measure(precision: str, device: torch.device, image_size: int, batch_size: int) -> int:
    """How many training steps :func:`resolve_precision` will time (0: it decides without)."""
    if precision != AUTO or device.type != "cpu" or not cpu_has_native_bf16():
        return 0
    batch = _measured_batch(batch_size)
    return 0 if (str(device), torch.get_num_threads(), image_size, batch) in _measured else 2 + 2 * REPEATS


def sample_image_size(dataset, default: int = 224) -> int:
    """The side of the dataset's first (transformed) image, drawn without moving any RNG."""
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            image = dataset[0][0]
        return int(image.shape[-1])
    except Exception:  # noqa: BLE001 - a dataset that cannot say: measure at the usual size
        return default
    finally:
        random.setstate(state)
