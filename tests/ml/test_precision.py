"""Training precision: the choice (asked for, or measured for ``auto``), and BF16 autocast really
used by the training loop on a CPU."""
from __future__ import annotations

import random

import pytest
import torch
from torch.utils.data import Subset

from ml import precision
from ml.data import load_pet_datasets, make_loader
from ml.model import build_resnet34
from ml.progress import FROZEN
from ml.recipes.full import fit
from ml.training import History, make_optimizer, make_scheduler, stage_lrs, train_one_epoch

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_resnet34(weights=None)


@pytest.fixture(scope="module")
def loader(tiny_pets):
    datasets = load_pet_datasets(tiny_pets, image_size=32, seed=0, with_test=False)
    return make_loader(Subset(datasets.train, range(16)), 8, train=True, seed=0)


def test_asked_for_precisions_are_used_and_logged(model):
    lines = []
    assert precision.resolve_precision("fp32", CPU, model, 32, 8, lines.append) == "fp32"
    assert precision.resolve_precision("bf16", CPU, model, 32, 8, lines.append) == "bf16"
    assert lines == ["precision fp32 (asked for)", "precision bf16 (asked for)"]


def test_impossible_precisions_are_clear_errors(model):
    with pytest.raises(ValueError, match="Unknown precision 'int4'.*auto, fp32, bf16, fp16"):
        precision.resolve_precision("int4", CPU, model, 32, 8)
    with pytest.raises(ValueError, match="FP16 mixed precision needs a CUDA GPU.*bf16 or fp32"):
        precision.resolve_precision("fp16", CPU, model, 32, 8)


def test_auto_on_this_cpu_follows_its_flags_and_a_measurement(model):
    lines = []
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    chosen = precision.resolve_precision("auto", CPU, model, 32, 64, lines.append)
    (line,) = lines
    if not precision.cpu_has_native_bf16():
        assert chosen == "fp32"
        assert "has no avx512_bf16 or amx_bf16" in line
    else:
        speedup = precision.bf16_speedup(model, 32, 8, CPU)  # the measurement auto made (kept per process)
        assert chosen == ("bf16" if speedup >= precision.MIN_SPEEDUP else "fp32")
        assert f"measured {speedup:.2f}x FP32" in line
        assert "batch 8" in line
    # The measurement ran on copies and drew no random numbers: a seeded run stays seeded.
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_sample_image_size_reads_the_dataset_without_moving_any_rng(loader):
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    assert precision.sample_image_size(loader.dataset) == 32
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state


def _one_epoch(model, loader, chosen):
    lrs = stage_lrs(1e-2, FROZEN)
    optimizer = make_optimizer(model, lrs, 0.01)
    scheduler = make_scheduler(optimizer, lrs, len(loader), FROZEN)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return train_one_epoch(model, loader, optimizer, scheduler, scaler, CPU, History(), 1, FROZEN,
                           progress=False, precision=chosen)


@pytest.mark.parametrize(("chosen", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_training_loop_computes_in_the_chosen_precision(loader, chosen, dtype):
    torch.manual_seed(0)
    model = build_resnet34(weights=None)
    seen = set()
    model.layer1.register_forward_hook(lambda module, args, output: seen.add(output.dtype))
    before = model.fc.weight.detach().clone()
    loss, _ = _one_epoch(model, loader, chosen)
    assert seen == {dtype}
    assert torch.isfinite(torch.tensor(loss))
    assert not torch.equal(before, model.fc.weight)
    assert model.fc.weight.dtype == torch.float32  # autocast: the weights stay FP32


def test_fit_records_the_precision_it_used(tiny_pets):
    datasets = load_pet_datasets(tiny_pets, image_size=32, seed=0, with_test=False)
    train = make_loader(Subset(datasets.train, range(8)), 8, train=True, seed=0)
    valid = make_loader(Subset(datasets.valid, range(8)), 8, train=False)
    torch.manual_seed(0)
    lines = []
    history = fit(build_resnet34(weights=None), train, valid, freeze_epochs=1, epochs=0, progress=False,
                  log=lines.append, precision="bf16")
    assert history.precision == "bf16"
    assert history.to_dict()["precision"] == "bf16"
    assert lines[0] == "precision bf16 (asked for)"
