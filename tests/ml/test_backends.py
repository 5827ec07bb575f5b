"""Inference backends: each agrees with eager FP32; the automatic choice rejects wrong ones and caches."""
import io
import json
import sys
import threading

import pytest
import torch

from ml import backend_choice, backends, machine, onnx_export
from ml.backends import AUTO_CANDIDATES, BF16_TOLERANCE, EAGER, FP32_TOLERANCE, Backend, EagerBackend
from ml.checkpoints import load_checkpoint
from ml.inference import Predictor
from tests.helpers import image_bytes

# torch.compile takes 5-15 s per batch shape on two cores: only in the slow run.
AVAILABLE = [
    pytest.param(name, marks=pytest.mark.slow) if name == backends.COMPILE else name
    for name in backends.available_backends()
]


@pytest.fixture(scope="module")
def checkpoint(checkpoint_file):
    return load_checkpoint(checkpoint_file)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One backend cache for the module: the ONNX export (seconds) happens once."""
    return tmp_path_factory.mktemp("backend-cache")


@pytest.fixture(scope="module")
def reference(checkpoint):
    """Eager FP32 on real image files made here (several colours, sizes and marks)."""
    predictor = Predictor(checkpoint)
    colours = [(200, 120, 40), (30, 90, 200), (250, 250, 250), (10, 160, 70), (120, 40, 160), (0, 0, 0)]
    photos = [image_bytes(size=(96 + 16 * i, 72 + 8 * i), color=c, mark=i * 37) for i, c in enumerate(colours)]
    tensors = [predictor.preprocess(io.BytesIO(photo)) for photo in photos]
    with torch.inference_mode():
        features, logits = predictor.backend(torch.stack(tensors))
    return tensors, predictor.classify_batch(tensors, k=37), features, logits


def test_default_backend_is_eager_fp32(checkpoint):
    predictor = Predictor(checkpoint)
    assert predictor.backend.name == EAGER
    assert predictor.backend_report is None
    assert next(predictor.model.parameters()).dtype == torch.float32


# The ONNX export takes 10-15 s on two cores: the tests that make one (this one's ONNX case,
# the automatic choice, the export cache) run in the full suite, not the quick loop.
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name == backends.ONNX else name
                                  for name in AVAILABLE])
def test_every_available_backend_agrees_with_eager_fp32(checkpoint, reference, name, cache_dir):
    tensors, expected, ref_features, ref_logits = reference
    predictor = Predictor(checkpoint, backend=name, backend_cache_dir=cache_dir)
    assert predictor.backend.name == name

    with torch.inference_mode():
        features, logits = predictor.backend(torch.stack(tensors))
    # ml.calibration's contract: the pooled 512 features and the logits, float32.
    assert features.dtype == logits.dtype == torch.float32
    assert features.shape == ref_features.shape == (len(tensors), 512)
    tolerance = BF16_TOLERANCE if name == backends.BF16 else FP32_TOLERANCE
    assert torch.allclose(features, ref_features, rtol=tolerance * 10, atol=tolerance * 10)

    results = predictor.classify_batch(tensors, k=37)
    for got, want in zip(results, expected, strict=True):
        assert got.top_k[0].label == want.top_k[0].label
        got_p, want_p = dict(got.top_k), dict(want.top_k)
        assert max(abs(got_p[label] - p) for label, p in want_p.items()) <= tolerance
        assert got.verdict == want.verdict
    assert [r.top_k[:5] for r in results] == [[(p.label, pytest.approx(p.probability, abs=tolerance))
                                                for p in r.top_k[:5]] for r in expected]
    assert predictor.classify(tensors[0], k=3).top_k[0].label == expected[0].top_k[0].label


def test_unknown_backend_is_a_clear_error(checkpoint):
    with pytest.raises(ValueError, match="Unknown inference backend 'tensorrt'.*eager"):
        Predictor(checkpoint, backend="tensorrt")


@pytest.mark.slow  # an export of its own (~5-10 s on two cores)
@pytest.mark.skipif(not backends.OnnxBackend.available()[0], reason="onnxruntime does not import here")
def test_onnx_export_is_cached_per_weights(checkpoint, tmp_path):
    model = checkpoint.build_model()
    first = backends.make_backend(backends.ONNX, model, tmp_path)
    assert first.path.parent == tmp_path / "onnx"
    assert first.path.exists()
    written = first.path.stat().st_mtime_ns
    second = backends.make_backend(backends.ONNX, checkpoint.build_model(), tmp_path)
    assert second.path == first.path
    assert second.path.stat().st_mtime_ns == written
    assert list((tmp_path / "onnx").iterdir()) == [first.path]  # no temporary file left behind

    with torch.no_grad():
        model.fc.bias[0] += 1e-3
    assert onnx_export.onnx_path(model, tmp_path) != first.path  # other weights: another export


def test_onnx_without_onnxruntime_is_left_out_with_a_reason(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python does when it cannot import
    ok, why = backends.OnnxBackend.available()
    assert not ok
    assert "onnxruntime does not import" in why
    with pytest.raises(ValueError, match="'onnx' cannot run here: onnxruntime does not import"):
        backends.make_backend(backends.ONNX, checkpoint.build_model(), tmp_path)
    candidates = {EAGER: EagerBackend, backends.ONNX: backends.OnnxBackend}
    name, report = backend_choice.choose_backend(checkpoint.build_model(), 32, candidates=candidates, batch_sizes=(2,),
                                           cache_dir=tmp_path, repeats=1)
    assert name == EAGER
    assert report["candidates"][backends.ONNX] == {"accepted": False, "reason": f"unavailable: {why}"}


class Counted:
    """A factory that counts how often it builds a backend (i.e. how often it is measured)."""

    def __init__(self, factory):
        self.factory, self.calls = factory, 0

    def __call__(self, model):
        self.calls += 1
        return self.factory(model)


class WrongBackend(Backend):
    """Fast and wrong: eager's answer with the runner-up pushed to the top."""

    name = "wrong"
    tolerance = BF16_TOLERANCE

    def __call__(self, images):
        features, logits = EagerBackend(self.model)(images)
        second = logits.topk(2, dim=1).indices[:, 1]
        return features, logits.scatter_add(1, second[:, None], torch.full_like(logits[:, :1], 5.0))


class SlightlyOffBackend(Backend):
    """Same top-1 as eager, but its top probability is off by more than FP32's tolerance."""

    name = "slightly_off"
    tolerance = FP32_TOLERANCE

    def __call__(self, images):
        features, logits = EagerBackend(self.model)(images)
        top = logits.argmax(1)
        return features, logits.scatter_add(1, top[:, None], torch.full_like(logits[:, :1], 0.01))


def test_auto_rejects_wrong_backends_and_caches_its_choice(checkpoint, tmp_path, caplog):
    model = checkpoint.build_model()
    counted = {name: Counted(backends.FACTORIES[name]) for name in (EAGER, backends.CHANNELS_LAST)}
    counted["wrong"], counted["slightly_off"] = Counted(WrongBackend), Counted(SlightlyOffBackend)
    caplog.set_level("INFO", logger="ml.backend_choice")

    name, report = backend_choice.choose_backend(model, 64, candidates=counted, batch_sizes=(1, 4), cache_dir=tmp_path,
                                           repeats=1)

    assert name in (EAGER, backends.CHANNELS_LAST)
    assert report["chosen"] == name
    assert report["cached"] is False
    wrong, off = report["candidates"]["wrong"], report["candidates"]["slightly_off"]
    assert not wrong["accepted"]
    assert not wrong["top1_agrees"]
    assert "top-1" in wrong["reason"]
    assert not off["accepted"]
    assert off["top1_agrees"]
    assert off["max_probability_diff"] > FP32_TOLERANCE
    assert "timings" not in wrong  # rejected before timing
    for accepted in (EAGER, backends.CHANNELS_LAST):
        figures = report["candidates"][accepted]
        assert figures["accepted"]
        assert figures["max_probability_diff"] <= FP32_TOLERANCE
        assert set(figures["timings"]) == {"1", "4"}
        assert figures["timings"]["4"]["images_per_s"] > 0
    assert f"Inference backend {name!r} chosen" in caplog.text
    assert "wrong: rejected" in caplog.text
    # The model handed in is left as it was (candidates ran on copies).
    assert model.conv1.weight.is_contiguous()
    assert all(c.calls == 1 for c in counted.values())

    cache = json.loads((tmp_path / "backends.json").read_text())
    assert [entry["backend"] for entry in cache["choices"].values()] == [name]

    again, cached_report = backend_choice.choose_backend(model, 64, candidates=counted, batch_sizes=(1, 4),
                                                   cache_dir=tmp_path)
    assert again == name
    assert cached_report["cached"] is True
    assert all(c.calls == 1 for c in counted.values())  # nothing measured a second time

    # Another input size is another choice: measured again.
    backend_choice.choose_backend(model, 32, candidates=counted, batch_sizes=(1, 4), cache_dir=tmp_path, repeats=1)
    assert all(c.calls == 2 for c in counted.values())


def test_cache_key_changes_with_the_weights(checkpoint, tmp_path):
    state = checkpoint.state_dict
    key = machine.weights_key(state)
    assert machine.weights_key(dict(state)) == key
    changed = dict(state)
    changed["fc.bias"] = state["fc.bias"].clone()
    changed["fc.bias"][0] += 1e-3
    assert machine.weights_key(changed) != key

    model = checkpoint.build_model()
    counted = {EAGER: Counted(EagerBackend)}
    backend_choice.choose_backend(model, 32, candidates=counted, batch_sizes=(2,), cache_dir=tmp_path, repeats=1)
    backend_choice.choose_backend(model, 32, candidates=counted, batch_sizes=(2,), cache_dir=tmp_path, repeats=1)
    assert counted[EAGER].calls == 1
    with torch.no_grad():
        model.fc.bias[0] += 1e-3
    backend_choice.choose_backend(model, 32, candidates=counted, batch_sizes=(2,), cache_dir=tmp_path, repeats=1)
    assert counted[EAGER].calls == 2
    assert len(json.loads((tmp_path / "backends.json").read_text())["choices"]) == 2


@pytest.mark.slow  # measures ONNX too: an export (see above)
def test_predictor_auto_uses_the_measured_choice(checkpoint, reference, cache_dir):
    tensors, expected, _, _ = reference
    predictor = Predictor(checkpoint, backend="auto", backend_cache_dir=cache_dir)
    report = predictor.backend_report
    assert predictor.backend.name == report["chosen"]
    assert set(report["candidates"]) == set(AUTO_CANDIDATES)
    assert report["candidates"][report["chosen"]]["accepted"]
    results = predictor.classify_batch(tensors, k=5)
    assert [r.top_k[0].label for r in results] == [r.top_k[0].label for r in expected]

    second = Predictor(checkpoint, backend="auto", backend_cache_dir=cache_dir)
    assert second.backend_report["cached"]
    assert second.backend.name == predictor.backend.name


# CPUs to stand for, whatever this machine is: the choice must depend on the flags it is given.
AVX2_ONLY = {"model": "a CPU with AVX2 alone", "flags": ["avx", "avx2", "fma", "sse4_2"]}
WITH_BF16 = {"model": "a CPU with native BF16", "flags": ["avx", "avx2", "avx512f", "avx512_bf16"]}
WITH_AMX = {"model": "a CPU with AMX", "flags": ["avx", "avx2", "amx_bf16", "amx_tile"]}


def test_bf16_is_not_timed_on_a_cpu_without_native_bf16(checkpoint, tmp_path):
    model = checkpoint.build_model()
    candidates = [EAGER, backends.BF16]
    name, report = backend_choice.choose_backend(model, 32, candidates=candidates, batch_sizes=(2,), cache_dir=tmp_path,
                                           repeats=1, cpu=AVX2_ONLY)
    bf16 = report["candidates"][backends.BF16]
    assert bf16 == {"accepted": False, "reason": bf16["reason"]}  # never built, run nor timed
    assert bf16["reason"].startswith("skipped: ")
    assert "avx512_bf16" in bf16["reason"]
    assert name == EAGER
    assert "timings" in report["candidates"][EAGER]
    assert report["machine"]["cpu"] == AVX2_ONLY["model"]
    assert not report["machine"]["cpu_flags"]["avx512_bf16"]

    # With AMX (or AVX-512 BF16: test_bf16_can_win_by_cpu_flags...) BF16 is a candidate: timed.
    _, report = backend_choice.choose_backend(model, 32, candidates=candidates, batch_sizes=(2,), cache_dir=tmp_path,
                                        repeats=1, cpu=WITH_AMX)
    assert report["cached"] is False  # another CPU: another choice, not the AVX2 one from the cache
    assert report["candidates"][backends.BF16]["accepted"]
    assert "timings" in report["candidates"][backends.BF16]


def test_bf16_can_win_by_cpu_flags_on_cpus_and_always_on_gpus():
    assert not backends.BF16Backend.can_win("cpu", AVX2_ONLY["flags"])[0]
    assert backends.BF16Backend.can_win("cpu", WITH_BF16["flags"]) == (True, "")
    assert backends.BF16Backend.can_win("cpu", WITH_AMX["flags"]) == (True, "")
    assert backends.BF16Backend.can_win("cuda", [])[0]  # on a GPU: as before, available() decides
    assert all(backends.FACTORIES[name].can_win("cpu", [])[0] for name in backends.BACKENDS if name != backends.BF16)
    # Asked for by name, BF16 still runs on any CPU (the benchmarks measure it there).
    assert backends.BF16Backend.available("cpu")[0]


def test_cached_choice_finds_what_the_automatic_choice_cached(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # no export: this test is about the lookup
    model = checkpoint.build_model()
    key = machine.weights_key(checkpoint.state_dict)
    assert backend_choice.cached_choice(key, 32, cache_dir=tmp_path, cpu=AVX2_ONLY) is None

    name, report = backend_choice.choose_backend(model, 32, cache_dir=tmp_path, model_key=key, repeats=1, cpu=AVX2_ONLY)
    found, cached = backend_choice.cached_choice(key, 32, cache_dir=tmp_path, cpu=AVX2_ONLY)
    assert found == name
    assert cached["cached"] is True
    assert cached["candidates"] == report["candidates"]
    assert backend_choice.cached_choice(key, 32, cache_dir=tmp_path, cpu=WITH_BF16) is None  # another machine
    assert backend_choice.cached_choice(key, 64, cache_dir=tmp_path, cpu=AVX2_ONLY) is None  # another input size
    assert backend_choice.cached_choice("other weights", 32, cache_dir=tmp_path, cpu=AVX2_ONLY) is None


def test_predictor_changes_backend_in_place(checkpoint, reference, cache_dir):
    tensors, expected, _, _ = reference
    predictor = Predictor(checkpoint, backend_cache_dir=cache_dir)
    predictor.use_backend(backends.CHANNELS_LAST, {"chosen": backends.CHANNELS_LAST})
    assert predictor.backend.name == backends.CHANNELS_LAST
    assert predictor.backend_report["chosen"] == "channels_last"
    results = predictor.classify_batch(tensors, k=5)
    assert [r.top_k[0].label for r in results] == [r.top_k[0].label for r in expected]
    with pytest.raises(ValueError, match="Unknown inference backend"):
        predictor.use_backend("tensorrt")
    assert predictor.backend.name == backends.CHANNELS_LAST  # a failed change keeps the backend it had


def test_choices_written_at_once_for_different_models_are_all_kept(tmp_path):
    """Two warm-ups of different models may finish together: neither may drop the other's choice."""
    path = tmp_path / backend_choice.CACHE_FILE

    def write(writer: int) -> None:
        for i in range(15):
            backend_choice._write_cache(path, f"model-{writer}-{i}", {"backend": EAGER, "report": {}})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(json.loads(path.read_text())["choices"]) == 6 * 15
