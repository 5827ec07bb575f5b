"""Ways to run the Predictor's model, and the automatic choice of the fastest exact one.

Every backend turns a batch of preprocessed images into ``(features, logits)``, both
float32: the pooled, flattened 512 numbers that ``model.fc`` receives (what
``ml.calibration`` fits its Mahalanobis statistics on) and the class scores. That is
the contract of :func:`ml.calibration.features_and_logits`, which the eager backend
uses unchanged.

==================  ============================================================  =========
name                what it does                                                  tolerance
==================  ============================================================  =========
``eager``           the model as built, FP32: the reference, always there         -
``channels_last``   weights and input in NHWC order (oneDNN's native layout)      1e-4
``bf16``            ``channels_last`` + ``torch.autocast(bfloat16)``; the small   0.01
                    head runs in FP32 on the pooled features
``compile``         ``torch.compile`` of the explicit forward, weights frozen     1e-4
                    (needs a C++ compiler; seconds to compile each batch shape)
``onnx``            ONNX Runtime (CPU, or CUDA where its provider is installed)   1e-4
                    on the model exported once by ``torch.onnx.export``
                    (dynamo exporter, any batch size), cached as a file
==================  ============================================================  =========

Machines differ: with AVX-512 BF16 or AMX, BF16 runs several times faster than FP32;
with AVX2 alone it is emulated and slower (0.19x eager measured on such a CPU, after 47 s
of warm-up). So a candidate that cannot win on the CPU at hand is not timed at all
(:meth:`Backend.can_win`: BF16 on a CPU without ``avx512_bf16`` or ``amx_bf16``; the
report says why), and for the others nothing is assumed: :func:`choose_backend`
runs each candidate on fixed inputs, rejects any whose top-1 differs from eager FP32 or
whose probabilities differ by more than its tolerance, times the others a few times each,
taking turns call by call (so that a burst of load from another process hits them all),
keeps the fastest by throughput at the largest batch size, logs the figures, and caches
the choice per model weights and machine (CPU model and flags, torch version, threads)
in a small JSON file, so that a worker child does not remeasure at every start.

``compile`` is not among the automatic candidates by default: compiling costs 5-30 s
per new batch shape on two cores, in every worker child (a cached choice does not save
it; a micro-batching worker meets many shapes), and on this project's CPU it lost to
``bf16`` anyway (``bench/README.md``). Ask for it explicitly (``candidates=`` or
``backend="compile"``). It compiles with inductor's weight freezing, which needs the
calls to run under ``torch.inference_mode()`` or ``no_grad`` (the Predictor does).

``onnx`` is an automatic candidate when ``onnxruntime`` imports (it is optional: without
it the report says so and the other candidates run). The exported file is cached in
``cache_dir/onnx/`` (next to ``backends.json``) under the weights' hash and the torch
version. Exporting takes 8 s on two idle cores and minutes on busy ones, so a worker never
does it while a photo waits: ``ml.warmup`` exports and chooses once per model and machine,
in a process of its own, and a worker child serves eager FP32 until the choice is written
(:func:`cached_choice` is what it looks for). INT8 (ONNX Runtime's static quantization) is
not offered: see ``bench/README.md`` for why.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import nn

from . import calibration as calibration_
from .files import atomic_path

logger = logging.getLogger(__name__)

EAGER = "eager"
CHANNELS_LAST = "channels_last"
BF16 = "bf16"
COMPILE = "compile"
ONNX = "onnx"
AUTO = "auto"
BACKENDS = (EAGER, CHANNELS_LAST, BF16, COMPILE, ONNX)
AUTO_CANDIDATES = (EAGER, CHANNELS_LAST, BF16, ONNX)  # compile only on request: see the module docstring

FP32_TOLERANCE = 1e-4  # largest allowed difference of any probability from eager FP32's
BF16_TOLERANCE = 0.01
CACHE_FILE = "backends.json"
CACHE_VERSION = 1
DEFAULT_BATCH_SIZES = (1, 16)  # the batch sizes the automatic choice times (a lone upload, a burst)
# The CPU flags that decide which backend wins, reported by the benchmark and the choice.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# Native BF16 arithmetic: without one of these a CPU emulates BF16, slower than FP32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


# --- the backends -------------------------------------------------------------------------------

def resnet_features_and_logits(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision ResNet's forward written out, returning the input of ``model.fc`` as well.

    Same operations as ``ResNet._forward_impl``; no hook, so ``torch.compile`` sees one graph.
    """
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(images))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    features = torch.flatten(m.avgpool(x), 1)
    return features, m.fc(features)


class Backend:
    """Runs one model: ``backend(images) -> (features, logits)``, float32, on the model's device.

    A backend may change its model in place (memory layout only; the weights' values stay):
    the Predictor's ``model`` remains usable for everything else, Grad-CAM included.
    """

    name = EAGER
    tolerance = 0.0  # largest allowed probability difference from eager FP32

    def __init__(self, model: nn.Module, cache_dir: str | os.PathLike | None = None):
        """``cache_dir``: where a backend may keep files it derives from the model (ONNX's export)."""
        self.model = model
        self.device = next(model.parameters()).device

    @classmethod
    def available(cls, device: torch.device | str = "cpu") -> tuple[bool, str]:
        """(whether it can run here, why not)."""
        return True, ""

    @classmethod
    def can_win(cls, device: torch.device | str, cpu_flags: Sequence[str]) -> tuple[bool, str]:
        """(whether it can be faster than eager FP32 on this device and CPU, why not): the
        automatic choice does not time a candidate that cannot win. ``cpu_flags``: all the
        CPU's flags (:func:`cpu_info`)."""
        return True, ""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = calibration_.features_and_logits(self.model, images)
        return features.float(), logits.float()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class EagerBackend(Backend):
    """The model as built, FP32, through :func:`ml.calibration.features_and_logits`: the reference."""


class ChannelsLastBackend(Backend):
    name = CHANNELS_LAST
    tolerance = FP32_TOLERANCE

    def __init__(self, model: nn.Module, cache_dir: str | os.PathLike | None = None):
        super().__init__(model.to(memory_format=torch.channels_last))

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = resnet_features_and_logits(self.model, images.contiguous(memory_format=torch.channels_last))
        return features.float(), logits.float()


class BF16Backend(ChannelsLastBackend):
    """The body under BF16 autocast; the last feature map is turned back to FP32, and the
    pooling and the head run in FP32 (it costs nothing and keeps the logits as exact as the
    features)."""

    name = BF16
    tolerance = BF16_TOLERANCE

    @classmethod
    def available(cls, device: torch.device | str = "cpu") -> tuple[bool, str]:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return False, "this GPU has no bfloat16"
        if device.type == "cpu" and not torch.backends.mkldnn.is_available():
            return False, "this torch build has no oneDNN"
        return True, ""

    @classmethod
    def can_win(cls, device: torch.device | str, cpu_flags: Sequence[str]) -> tuple[bool, str]:
        if torch.device(device).type == "cpu" and not set(BF16_CPU_FLAGS) & set(cpu_flags):
            return False, ("this CPU has neither avx512_bf16 nor amx_bf16: BF16 is emulated there, "
                           "slower than FP32")
        return True, ""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        with torch.autocast(self.device.type, torch.bfloat16):
            x = m.maxpool(m.relu(m.bn1(m.conv1(images.contiguous(memory_format=torch.channels_last)))))
            x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        # Pooling in FP32 spares the features one more rounding to BF16's 8 bits: on a trained
        # head it took the largest probability difference from 0.0099 to 0.0088 (tolerance 0.01).
        features = torch.flatten(m.avgpool(x.float()), 1)
        return features, m.fc(features).float()


class CompiledBackend(Backend):
    """``torch.compile`` (inductor) of :func:`resnet_features_and_logits`; compiles lazily,
    at the first call of each new batch shape (static shapes: dynamic ones ran slower)."""

    name = COMPILE
    tolerance = FP32_TOLERANCE

    def __init__(self, model: nn.Module, cache_dir: str | os.PathLike | None = None):
        super().__init__(model)
        # Freezing folds the (eval-mode, unchanging) weights into the graph, so that oneDNN gets
        # prepacked convolutions: without it inductor's CPU code was 3x slower than with it here.
        self._compiled = torch.compile(lambda images: resnet_features_and_logits(model, images),
                                       dynamic=False, options={"freezing": True})

    @classmethod
    def available(cls, device: torch.device | str = "cpu") -> tuple[bool, str]:
        if torch.device(device).type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return False, "no C++ compiler for torch.compile's CPU code"
        return True, ""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self._compiled(images)
        return features.float(), logits.float()


class _Features(nn.Module):
    """:func:`resnet_features_and_logits` as a module, for the exporter."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return resnet_features_and_logits(self.model, images)


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
    """:func:`export_onnx` in a child process (``python -m ml.backends``).

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
        done = subprocess.run([sys.executable, "-m", "ml.backends", "export", str(module_file), str(path)],  # noqa: S603
                              cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the ONNX export failed: {done.stderr.strip()[-1000:]}")
    return Path(path)


class OnnxBackend(Backend):
    """ONNX Runtime on the exported model (FP32): one session, with as many intra-op threads
    as torch uses (``PETSITE_TORCH_THREADS`` in a worker), so that switching backends does not
    change how many cores a worker takes."""

    name = ONNX
    tolerance = FP32_TOLERANCE

    def __init__(self, model: nn.Module, cache_dir: str | os.PathLike | None = None):
        super().__init__(model)
        import onnxruntime as ort

        self.path = onnx_path(model, cache_dir)
        if not self.path.exists():
            started = time.perf_counter()
            export_onnx_in_subprocess(model, self.path)
            logger.info("Exported the model to ONNX in %.1f s: %s", time.perf_counter() - started, self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider"] if self.device.type == "cuda" else []
        self.session = ort.InferenceSession(str(self.path), options, providers=[*providers, "CPUExecutionProvider"])

    @classmethod
    def available(cls, device: torch.device | str = "cpu") -> tuple[bool, str]:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return False, f"onnxruntime does not import ({exc}); pip install onnxruntime to offer it"
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return False, "this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
        return True, ""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        features, logits = self.session.run(["features", "logits"], {"images": array})
        return torch.from_numpy(features).to(self.device), torch.from_numpy(logits).to(self.device)


def onnx_path(model: nn.Module, cache_dir: str | os.PathLike | None = None, model_key: str | None = None) -> Path:
    """Where the export of ``model`` is cached: keyed by its weights (``model_key``, default
    :func:`weights_key` of them) and the torch version (another exporter may write another graph)."""
    model_key = model_key or weights_key(model.state_dict())
    key = hashlib.sha256(f"{model_key}|{torch.__version__}".encode()).hexdigest()[:24]
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "onnx" / f"{key}.onnx"


BackendFactory = Callable[[nn.Module], Backend]
FACTORIES: dict[str, type[Backend]] = {
    EAGER: EagerBackend, CHANNELS_LAST: ChannelsLastBackend, BF16: BF16Backend, COMPILE: CompiledBackend,
    ONNX: OnnxBackend,
}


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """The names of the backends that can run on ``device`` here (``eager`` always)."""
    return [name for name, cls in FACTORIES.items() if cls.available(device)[0]]


def make_backend(name: str, model: nn.Module, cache_dir: str | os.PathLike | None = None) -> Backend:
    """The backend ``name`` for ``model`` (which it may convert in place to its memory layout);
    ``cache_dir`` holds what a backend derives from the model (default ``~/.cache/petsite``)."""
    if name not in FACTORIES:
        raise ValueError(f"Unknown inference backend {name!r}; choose one of {', '.join((*BACKENDS, AUTO))}.")
    cls = FACTORIES[name]
    ok, why = cls.available(next(model.parameters()).device)
    if not ok:
        raise ValueError(f"Inference backend {name!r} cannot run here: {why}.")
    return cls(model, cache_dir=cache_dir)


# --- keys: which model, which machine ------------------------------------------------------------

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


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("choices"), dict):
        return {}
    return data


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add one entry: read, change, write to a temporary file, rename (a reader never sees half
    a file), under a lock of the file, so that two processes measuring different models at
    once (two warm-ups) both keep their entry."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(path.name + ".lock"), timeout=60):
            data = _read_cache(path) or {"version": CACHE_VERSION, "choices": {}}
            data["choices"][key] = entry
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    except (OSError, Timeout) as exc:  # a read-only home must not stop a worker
        logger.warning("Could not cache the inference backend choice in %s: %s", path, exc)


# --- the automatic choice -----------------------------------------------------------------------

def fixed_inputs(image_size: int, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The same normalised-looking images on every call: smooth colour fields plus noise."""
    generator = torch.Generator().manual_seed(1234)
    coarse = torch.randn(batch_size, 3, 4, 4, generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)
    noise = 0.3 * torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    return (smooth + noise).to(device)


def _time_once(backend: Backend, images: torch.Tensor) -> float:
    start = time.perf_counter()
    backend(images)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed_calls(backends: int, batch_sizes: Sequence[int], warmup: int = 1, repeats: int = 3) -> int:
    """How many calls :func:`time_backends` makes."""
    biggest = max(batch_sizes)
    return sum(backends * (warmup + (repeats if size == biggest else repeats + 2)) for size in set(batch_sizes))


def time_backends(
    backends_: Mapping[str, Backend], inputs: Mapping[int, torch.Tensor], warmup: int = 1, repeats: int = 3,
    on_call: Callable[[], None] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Median time and images/s per backend and batch size, the backends taking turns call
    by call (in alternating order), so that a change in machine load hits all of them
    rather than whichever was being timed. The largest batch gets ``repeats`` calls each,
    smaller ones two more (they are cheap and noisier). ``on_call()`` after every call
    (:func:`timed_calls` of them), outside the timed part: a training run's progress."""
    biggest = max(inputs)
    called = on_call or (lambda: None)
    timings: dict[str, dict[str, dict[str, float]]] = {name: {} for name in backends_}
    for batch_size, images in sorted(inputs.items()):
        for backend in backends_.values():
            for _ in range(warmup):
                backend(images)
                called()
        seconds: dict[str, list[float]] = {name: [] for name in backends_}
        names = list(backends_)
        for round_ in range(repeats if batch_size == biggest else repeats + 2):
            for name in names if round_ % 2 == 0 else reversed(names):
                seconds[name].append(_time_once(backends_[name], images))
                called()
        for name, values in seconds.items():
            median = statistics.median(values)
            timings[name][str(batch_size)] = {
                "median_ms": round(1000 * median, 2), "images_per_s": round(batch_size / median, 2),
            }
    return timings


def check_backend(
    factory: BackendFactory,
    model: nn.Module,
    inputs: Mapping[int, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
) -> tuple[dict[str, Any], Backend | None]:
    """(report, backend) for one candidate: whether it builds, runs and agrees with
    ``reference`` (eager FP32's (features, logits) on ``inputs[max batch]``) within its
    tolerance; the backend is None unless it was accepted."""
    biggest = max(inputs)
    started = time.perf_counter()
    try:
        backend = factory(model)
        tolerance = backend.tolerance
        features, logits = backend(inputs[biggest])
    except Exception as exc:  # a backend that cannot run here is a rejected candidate, not a dead worker
        logger.warning("Inference backend candidate failed: %r", exc)
        return {"accepted": False, "reason": f"failed: {type(exc).__name__}: {exc}"[:300]}, None
    first_call_s = time.perf_counter() - started
    ref_features, ref_logits = reference
    ref_probs, probs = torch.softmax(ref_logits.float(), 1), torch.softmax(logits.float(), 1)
    top1_agrees = bool((probs.argmax(1) == ref_probs.argmax(1)).all())
    probability_diff = float((probs - ref_probs).abs().max())
    feature_diff = float((calibration_.unit_length(features) - calibration_.unit_length(ref_features)).abs().max())
    report: dict[str, Any] = {
        "tolerance": tolerance,
        "top1_agrees": top1_agrees,
        "max_probability_diff": probability_diff,
        "max_unit_feature_diff": feature_diff,
        "features_ok": features.dtype == torch.float32 and features.shape == ref_features.shape,
        "first_call_s": round(first_call_s, 3),
    }
    if not top1_agrees:
        reason = "top-1 differs from eager FP32"
    elif not probability_diff <= tolerance:
        reason = f"probabilities differ by {probability_diff:.2g} > {tolerance:g}"
    elif not report["features_ok"]:
        reason = f"features are {features.dtype} {tuple(features.shape)}, not float32 {tuple(ref_features.shape)}"
    else:
        reason = None
    report["accepted"], report["reason"] = reason is None, reason
    return report, backend if reason is None else None


def measure_backend(
    factory: BackendFactory,
    model: nn.Module,
    inputs: Mapping[int, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
    warmup: int = 1,
    repeats: int = 3,
) -> dict[str, Any]:
    """One candidate's figures on its own: :func:`check_backend`, then, if it agrees, its
    median time per batch size (:func:`choose_backend` times its candidates together)."""
    report, backend = check_backend(factory, model, inputs, reference)
    if backend is not None:
        report["timings"] = time_backends({"candidate": backend}, inputs, warmup, repeats)["candidate"]
    return report


def _factories(candidates: Sequence[str] | Mapping[str, BackendFactory] | None, device: torch.device,
               cache_dir: Path, flags: Sequence[str]) -> tuple[dict[str, BackendFactory], dict[str, str]]:
    """(the candidates to time, eager first; why each other one is not timed: it cannot run
    here, or cannot win on this CPU)."""
    if candidates is None:
        candidates = AUTO_CANDIDATES
    if isinstance(candidates, Mapping):
        chosen = dict(candidates)
    else:
        unknown = [name for name in candidates if name not in FACTORIES]
        if unknown:
            raise ValueError(f"Unknown inference backends {unknown}; known: {', '.join(BACKENDS)}.")
        chosen = {name: FACTORIES[name] for name in candidates}
    eager = chosen.pop(EAGER, EagerBackend)
    left_out = {}
    for name, factory in list(chosen.items()):
        if isinstance(factory, type) and issubclass(factory, Backend):
            ok, why = factory.available(device)
            if not ok:
                left_out[name] = f"unavailable: {why}"
                del chosen[name]
                continue
            ok, why = factory.can_win(device, flags)
            if not ok:
                left_out[name] = f"skipped: {why}"
                del chosen[name]
            else:
                chosen[name] = functools.partial(factory, cache_dir=cache_dir)
    return {EAGER: eager, **chosen}, left_out


def _choice_key(model_key: str, image_size: int, device: torch.device, batch_sizes: Sequence[int],
                names: Sequence[str], cpu: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the cache key of a choice, what it is made of)."""
    key_parts = {
        "model": model_key,
        **machine_key(device, cpu),
        "image_size": image_size,
        "batch_sizes": sorted(set(batch_sizes)),
        "candidates": sorted(names),
    }
    return hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest(), key_parts


def cached_choice(
    model_key: str,
    image_size: int,
    device: torch.device | str = "cpu",
    cache_dir: str | os.PathLike | None = None,
    *,
    cpu: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]] | None:
    """(backend, report) that :func:`choose_backend` with its default candidates and batch
    sizes cached for these weights (:func:`weights_key`) on this machine, or None: what a
    worker child serving eager FP32 looks for while a warm-up measures. Runs nothing."""
    device = torch.device(device)
    cpu = cpu or cpu_info()
    cache_root = Path(cache_dir if cache_dir is not None else default_cache_dir())
    factories, _ = _factories(None, device, cache_root, cpu["flags"])
    key, _ = _choice_key(model_key, image_size, device, DEFAULT_BATCH_SIZES, list(factories), cpu)
    cache_path = cache_root / CACHE_FILE
    entry = _read_cache(cache_path).get("choices", {}).get(key)
    if not entry or entry.get("backend") not in factories:
        return None
    return entry["backend"], {**entry["report"], "cached": True, "cache_file": str(cache_path)}


def choose_backend(
    model: nn.Module,
    image_size: int,
    candidates: Sequence[str] | Mapping[str, BackendFactory] | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    cache_dir: str | os.PathLike | None = None,
    *,
    use_cache: bool = True,
    model_key: str | None = None,
    warmup: int = 1,
    repeats: int = 3,
    cpu: Mapping[str, Any] | None = None,
    on_call: Callable[[int, int], None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(name of the fastest backend that agrees with eager FP32, report with every figure).

    ``candidates``: backend names (default :data:`AUTO_CANDIDATES`) or a mapping of name to
    factory (a callable taking the model, returning a :class:`Backend`); eager FP32 is
    always measured, as the reference and the fallback. Each candidate runs on a copy of
    ``model`` (``model`` itself is not changed). A candidate that cannot run here, or cannot
    win on this CPU (:meth:`Backend.can_win`), is not timed; the report says why. The
    winner has the highest throughput at the largest of ``batch_sizes``; the report also
    holds median latencies per batch size.

    The choice is cached in ``cache_dir/backends.json`` (default ``~/.cache/petsite``) per
    ``model_key`` (default: :func:`weights_key` of the model's weights) and
    :func:`machine_key`; a cached choice comes back with ``report["cached"] = True``
    without running the model. ``cpu`` (a :func:`cpu_info`) stands for this machine's CPU
    in the key and the candidates: tests use it to be another machine. ``on_call(done,
    calls)`` after every call of a model (a training run's progress: the timing takes
    minutes on a busy machine, and a cancelled run stops at the next call).
    """
    device = next(model.parameters()).device
    cpu = cpu or cpu_info()
    cache_root = Path(cache_dir if cache_dir is not None else default_cache_dir())
    factories, left_out = _factories(candidates, device, cache_root, cpu["flags"])
    batch_sizes = sorted(set(batch_sizes))
    key, key_parts = _choice_key(model_key or weights_key(model.state_dict()), image_size, device, batch_sizes,
                                 list(factories), cpu)
    cache_path = cache_root / CACHE_FILE
    if use_cache:
        entry = _read_cache(cache_path).get("choices", {}).get(key)
        if entry and entry.get("backend") in factories:
            report = {**entry["report"], "cached": True, "cache_file": str(cache_path)}
            logger.info("Inference backend %r (cached choice from %s, measured %s)",
                        entry["backend"], cache_path, entry.get("measured_at"))
            return entry["backend"], report

    inputs = {b: fixed_inputs(image_size, b, device) for b in batch_sizes}
    biggest = max(batch_sizes)
    results: dict[str, dict[str, Any]] = {}
    calls = [0, 1 + len(factories) + timed_calls(len(factories), batch_sizes, warmup, repeats)]  # done, planned

    def called() -> None:
        calls[0] += 1
        if on_call is not None:
            on_call(*calls)

    with torch.inference_mode():
        eager = EagerBackend(model)
        reference = eager(inputs[biggest])
        called()
        accepted_backends: dict[str, Backend] = {}
        for name, factory in factories.items():
            candidate_model = model if name == EAGER else copy.deepcopy(model)
            results[name], backend = check_backend(factory, candidate_model, inputs, reference)
            called()
            if backend is not None:
                accepted_backends[name] = backend
        calls[1] = calls[0] + timed_calls(len(accepted_backends), batch_sizes, warmup, repeats)
        for name, timings in time_backends(accepted_backends, inputs, warmup, repeats, called).items():
            results[name]["timings"] = timings
        del accepted_backends
    for name, why in left_out.items():
        results[name] = {"accepted": False, "reason": why}

    def throughput(name: str) -> float:
        return results[name]["timings"][str(biggest)]["images_per_s"]

    accepted = [name for name, r in results.items() if r["accepted"]]
    chosen = max(accepted, key=throughput) if accepted else EAGER
    if EAGER in accepted:
        eager_rate = throughput(EAGER)
        for name in accepted:
            results[name]["speedup_vs_eager"] = round(throughput(name) / eager_rate, 3)
    report = {
        "chosen": chosen,
        "image_size": image_size,
        "batch_sizes": batch_sizes,
        "machine": {**machine_key(device, cpu), "cpu_flags": cpu_flags(cpu)},
        "candidates": results,
        "cached": False,
        "cache_file": str(cache_path) if use_cache else None,
    }
    logger.info("Inference backend %r chosen: %s", chosen, summary(report))
    if use_cache:
        _write_cache(cache_path, key, {
            "backend": chosen, "key": key_parts, "report": report,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        })
    return chosen, report


def summary(report: Mapping[str, Any]) -> str:
    """One line per candidate of a :func:`choose_backend` report, for logs."""
    parts = []
    for name, r in report["candidates"].items():
        if not r["accepted"]:
            parts.append(f"{name}: rejected ({r['reason']})")
            continue
        timings = ", ".join(
            f"batch {b}: {t['median_ms']:.1f} ms, {t['images_per_s']:.1f} images/s" for b, t in r["timings"].items()
        )
        speedup = f", {r['speedup_vs_eager']:.2f}x eager" if "speedup_vs_eager" in r else ""
        parts.append(f"{name}: {timings}{speedup}, probabilities within {r['max_probability_diff']:.1g}")
    return "; ".join(parts)


def resolve_backend(
    name: str,
    model: nn.Module,
    image_size: int,
    cache_dir: str | os.PathLike | None = None,
    model_key: str | None = None,
) -> tuple[Backend, dict[str, Any] | None]:
    """The backend ``name`` for ``model``, or for ``"auto"`` the one :func:`choose_backend`
    picks (with its report); a chosen backend that then fails to build falls back to eager."""
    if name != AUTO:
        return make_backend(name, model, cache_dir), None
    chosen, report = choose_backend(model, image_size, cache_dir=cache_dir, model_key=model_key)
    try:
        return make_backend(chosen, model, cache_dir), report
    except Exception as exc:  # pragma: no cover - a cached choice for a machine that changed under it
        logger.warning("Inference backend %r failed to load (%r); using eager FP32", chosen, exc)
        return EagerBackend(model), report


if __name__ == "__main__":  # python -m ml.backends export MODULE_FILE OUT.onnx (export_onnx_in_subprocess)
    _, command, module_file, out = sys.argv
    if command != "export":
        raise SystemExit(f"unknown command {command!r}: python -m ml.backends export MODULE_FILE OUT.onnx")
    export_onnx(torch.load(module_file, weights_only=False).eval(), out)
