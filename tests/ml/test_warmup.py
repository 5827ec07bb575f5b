"""The warm-up (ml.warmup) in real processes: it writes the choice and the ONNX export under
a lock per model and machine, a second warm-up of the same model waits and reuses them,
and a Predictor serving eager FP32 switches to the chosen backend once they are written."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest
import torch
from filelock import FileLock

from ml import backend_choice, backends, machine, onnx_export, warmup
from ml.checkpoints import load_checkpoint
from ml.inference import Predictor
from tests.helpers import image_bytes, wait_for

needs_onnxruntime = pytest.mark.skipif(not backends.OnnxBackend.available()[0], reason="onnxruntime does not import")


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def start(checkpoint_file, cache_dir, backend: str = warmup.AUTO) -> subprocess.Popen:
    """``python -m ml.warmup`` as a worker starts it (one torch thread, as the tests' workers have)."""
    command = warmup.command(checkpoint_file, backend, cache_dir=cache_dir, threads=1)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(process: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_names_are_those_of_ml_backends():
    assert warmup.NEEDS_WARM_UP == (backends.AUTO, backends.ONNX)
    assert warmup.needs_warm_up("auto")
    assert warmup.needs_warm_up("onnx")
    assert not warmup.needs_warm_up("eager")


def test_importing_the_warm_up_loads_neither_torch_nor_django():
    code = "import sys, ml.warmup; print(sorted(m for m in ('torch', 'django') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow  # an export and a timing of every candidate: 15 s on two idle cores
@needs_onnxruntime
def test_warm_up_writes_the_choice_and_the_export_under_the_lock(checkpoint_file, tmp_path):
    key = warmup.checkpoint_key(checkpoint_file)
    assert not warmup.is_running(tmp_path, key)
    process = start(checkpoint_file, tmp_path)
    wait_for(lambda: warmup.is_running(tmp_path, key) or process.poll() is not None, timeout=30,
             what="the warm-up to take its lock")
    assert process.poll() is None  # it held the lock while it ran
    first = result(process)
    assert not warmup.is_running(tmp_path, key)  # and let it go when it ended

    assert first["exported"]
    assert first["threads"] == 1
    assert first["choice"]["cached"] is False
    checkpoint = load_checkpoint(checkpoint_file)
    model_key = machine.weights_key(checkpoint.state_dict)
    onnx_file = onnx_export.onnx_path(checkpoint.build_model(), tmp_path, model_key)
    assert list((tmp_path / "onnx").iterdir()) == [onnx_file]  # the export, and no temporary file
    with one_thread():  # the cache key holds the thread count: look up as a 1-thread child would
        cache_file = str(tmp_path / backend_choice.CACHE_FILE)
        assert backend_choice.cached_choice(model_key, checkpoint.image_size, cache_dir=tmp_path) == (
            first["backend"], {**first["choice"], "cached": True, "cache_file": cache_file})
    candidates = first["choice"]["candidates"]
    assert set(candidates) == set(backends.AUTO_CANDIDATES)
    assert candidates[first["backend"]]["accepted"]
    assert candidates[backends.ONNX]["accepted"]

    exported_at = onnx_file.stat().st_mtime_ns
    again = result(start(checkpoint_file, tmp_path))  # nothing left to do: reads the cache
    assert again["backend"] == first["backend"]
    assert not again["exported"]
    assert again["choice"]["cached"]
    assert onnx_file.stat().st_mtime_ns == exported_at


@pytest.mark.slow
@needs_onnxruntime
def test_two_warm_ups_of_one_model_at_once_export_once(checkpoint_file, tmp_path):
    processes = [start(checkpoint_file, tmp_path), start(checkpoint_file, tmp_path)]
    first, second = sorted((result(p) for p in processes), key=lambda r: r["waited_s"])
    assert [first["exported"], second["exported"]] == [True, False]  # one export, counted by each process
    assert first["choice"]["cached"] is False
    assert second["choice"]["cached"] is True
    assert second["backend"] == first["backend"]
    assert second["waited_s"] >= first["seconds"] - first["waited_s"] - 1  # waited for the whole of the first
    assert len(list((tmp_path / "onnx").iterdir())) == 1
    assert len(json.loads((tmp_path / backend_choice.CACHE_FILE).read_text())["choices"]) == 1


@pytest.mark.slow
@needs_onnxruntime
def test_a_predictor_serves_eager_while_the_warm_up_runs_then_switches(checkpoint_file, tmp_path):
    data = checkpoint_file.read_bytes()
    key = warmup.checkpoint_key(data)
    with one_thread():  # as the warm-up is told the worker children have
        predictor = Predictor(data, backend_cache_dir=tmp_path)
        switch = warmup.BackendSwitch(predictor, warmup.AUTO, tmp_path, key)
        photos = [predictor.preprocess(io.BytesIO(image_bytes(mark=i))) for i in range(3)]
        expected = [r.top_k[0].label for r in predictor.classify_batch(photos)]

        with FileLock(warmup.lock_path(tmp_path, key)):  # another warm-up of this model holds the lock
            process = start(checkpoint_file, tmp_path)
            assert switch.warming_up()
            for _ in range(3):  # batch after batch: eager FP32, nothing waits
                assert not switch.poll()
                assert predictor.backend.name == backends.EAGER
                assert [r.top_k[0].label for r in predictor.classify_batch(photos)] == expected
            assert process.poll() is None  # the warm-up waits for the lock, it did not go ahead
        done = result(process)
        assert not switch.warming_up()

        assert switch.poll()
        assert switch.done
        assert predictor.backend.name == done["backend"]
        assert predictor.backend_report["cached"]
        assert [r.top_k[0].label for r in predictor.classify_batch(photos)] == expected
        assert not switch.poll()  # once switched, it stays


@pytest.mark.slow
@needs_onnxruntime
def test_the_onnx_backend_waits_for_its_export(checkpoint_file, tmp_path):
    data = checkpoint_file.read_bytes()
    predictor = Predictor(data, backend_cache_dir=tmp_path)
    switch = warmup.BackendSwitch(predictor, warmup.ONNX, tmp_path, warmup.checkpoint_key(data))
    assert not switch.poll()
    assert predictor.backend.name == backends.EAGER
    assert not (tmp_path / "onnx").exists()  # building the switch exported nothing

    done = result(start(checkpoint_file, tmp_path, backend=warmup.ONNX))
    assert done["backend"] == backends.ONNX
    assert done["exported"]
    assert done["choice"] is None
    assert not (tmp_path / backend_choice.CACHE_FILE).exists()  # an export only: nothing timed
    assert switch.poll()
    assert predictor.backend.name == backends.ONNX
