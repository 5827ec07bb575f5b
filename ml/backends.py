"""Ways to run the Predictor's model, by name (the automatic choice is ``ml.backend_choice``).

Every backend turns a batch of preprocessed images into ``(features, logits)``, both
float32: the pooled, flattened 512 numbers that ``model.fc`` receives (what
``ml.calibration`` fits its Mahalanobis statistics on) and the class scores. That is
the contract of :func:`ml.model.features_and_logits` (the ResNet's forward pass, written
once there), which every torch backend runs, each in its own layout or precision.

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
report says why), and for the others nothing is assumed: ``ml.backend_choice.choose_backend``
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
it the report says so and the other candidates run). The exported file (``ml.onnx_export``)
is cached in ``cache_dir/onnx/`` (next to ``backends.json``) under the weights' hash and the
torch version. Exporting takes 8 s on two idle cores and minutes on busy ones, so a worker never
does it while a photo waits: ``ml.warmup`` exports and chooses once per model and machine,
in a process of its own, and a worker child serves eager FP32 until the choice is written
(``ml.backend_choice.cached_choice`` is what it looks for). INT8 (ONNX Runtime's static quantization) is
not offered: see ``bench/README.md`` for why.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .machine import BF16_CPU_FLAGS
from .model import body_map, features_and_logits, pool_and_classify
from .onnx_export import export_onnx_in_subprocess, onnx_path

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
        features, logits = features_and_logits(self.model, images)
        return features.float(), logits.float()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class EagerBackend(Backend):
    """The model as built, FP32, through :func:`ml.model.features_and_logits`: the reference."""


class ChannelsLastBackend(Backend):
    name = CHANNELS_LAST
    tolerance = FP32_TOLERANCE

    def __init__(self, model: nn.Module, cache_dir: str | os.PathLike | None = None):
        super().__init__(model.to(memory_format=torch.channels_last))

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = features_and_logits(self.model, images.contiguous(memory_format=torch.channels_last))
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
        with torch.autocast(self.device.type, torch.bfloat16):
            feature_map = body_map(self.model, images.contiguous(memory_format=torch.channels_last))
        # Pooling in FP32 spares the features one more rounding to BF16's 8 bits: on a trained
        # head it took the largest probability difference from 0.0099 to 0.0088 (tolerance 0.01).
        features, logits = pool_and_classify(self.model, feature_map.float())
        return features, logits.float()


class CompiledBackend(Backend):
    """``torch.compile`` (inductor) of :func:`ml.model.features_and_logits`; compiles lazily,
    at the first call of each new batch shape (static shapes: dynamic ones ran slower)."""

    name = COMPILE
    tolerance = FP32_TOLERANCE

    def __init__(self, model: nn.Module, cache_dir: str | os.PathLike | None = None):
        super().__init__(model)
        # Freezing folds the (eval-mode, unchanging) weights into the graph, so that oneDNN gets
        # prepacked convolutions: without it inductor's CPU code was 3x slower than with it here.
        self._compiled = torch.compile(lambda images: features_and_logits(model, images),
                                       dynamic=False, options={"freezing": True})

    @classmethod
    def available(cls, device: torch.device | str = "cpu") -> tuple[bool, str]:
        if torch.device(device).type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return False, "no C++ compiler for torch.compile's CPU code"
        return True, ""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self._compiled(images)
        return features.float(), logits.float()


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

