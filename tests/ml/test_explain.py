"""Grad-CAM: the heat lies where the class evidence is, and the model is left as it was.

No training: a ResNet34 with random weights gets a head that reads the pooled channels
which answer a striped patch much more than the noisy background (about ten times more
on average), so "patch" versus "no patch" is its whole decision and the patch's place is
known exactly. Grad-CAM at 224 pixels (a 7 x 7 ``layer4`` map) must find it wherever it is.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ml.explain import explain_image, grad_cam, overlay
from ml.inference import Predictor
from ml.model import build_resnet34, features_and_logits
from tests.helpers import image_bytes

SIZE = 224
PATCH = (64, 80)  # height, width: not square, so a transposed heatmap would miss it
NO_PATCH, PATCH_CLASS = 0, 1


def _image(rng: np.random.Generator, at: tuple[int, int] | None = None) -> torch.Tensor:
    """A normalised input: noise, and, at ``at`` (top, left), a striped patch."""
    x = torch.from_numpy(rng.normal(0, 0.5, size=(3, SIZE, SIZE)).astype(np.float32))
    if at is not None:
        (top, left), (h, w) = at, PATCH
        yy, xx = np.mgrid[0:h, 0:w]
        stripes = np.stack([np.sin(xx / 3.0) * 2, np.cos(yy / 3.0) * 2, np.full((h, w), 2.0)])
        x[:, top:top + h, left:left + w] = torch.from_numpy(stripes.astype(np.float32))
    return x


def _random_place(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(0, SIZE - PATCH[0])), int(rng.integers(0, SIZE - PATCH[1]))


@pytest.fixture(scope="module")
def patch_model():
    torch.manual_seed(0)
    model = build_resnet34(num_classes=2, weights=None).eval()
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        with_patch, _ = features_and_logits(model, torch.stack([_image(rng, _random_place(rng)) for _ in range(16)]))
        without, _ = features_and_logits(model, torch.stack([_image(rng) for _ in range(16)]))
    on, off = with_patch.mean(0), without.mean(0)
    chosen = ((on + 1e-3) / (off + 1e-3)).topk(32).indices  # channels that fire on the patch
    direction = torch.zeros_like(on)
    direction[chosen] = 1.0 / on[chosen].clamp(min=1e-3)
    bias = -(direction @ (on + off) / 2)
    with torch.no_grad():
        model.fc.weight.copy_(torch.stack([-direction, direction]))
        model.fc.bias.copy_(torch.stack([-bias, bias]))
    return model


def test_the_patch_model_decides_by_the_patch(patch_model):
    rng = np.random.default_rng(1)
    images = [_image(rng, _random_place(rng)) for _ in range(10)] + [_image(rng) for _ in range(10)]
    with torch.inference_mode():
        predicted = patch_model(torch.stack(images)).argmax(1).tolist()
    assert predicted == [PATCH_CLASS] * 10 + [NO_PATCH] * 10


@pytest.mark.parametrize("at", [(0, 0), (150, 130), (20, 140), (140, 10)])
def test_heat_lies_on_the_patch(patch_model, at):
    explanation = grad_cam(patch_model, _image(np.random.default_rng(2), at))
    heat = explanation.heatmap
    assert heat.shape == (SIZE, SIZE)
    assert heat.dtype == np.float32
    assert heat.min() >= 0
    assert heat.max() == pytest.approx(1.0)
    inside = np.zeros_like(heat, dtype=bool)
    inside[at[0]:at[0] + PATCH[0], at[1]:at[1] + PATCH[1]] = True
    assert explanation.class_index == PATCH_CLASS
    assert explanation.probability > 0.9
    assert heat[inside].mean() > 2 * heat[~inside].mean(), (heat[inside].mean(), heat[~inside].mean())
    # The hottest cell is on the patch (or touches it: a layer4 cell covers 32 pixels).
    row, col = np.unravel_index(heat.argmax(), heat.shape)
    assert at[0] - 32 <= row < at[0] + PATCH[0] + 32
    assert at[1] - 32 <= col < at[1] + PATCH[1] + 32


def test_the_other_class_is_not_explained_by_the_patch(patch_model):
    """Heat follows the gradient of the asked class, not merely strong activations."""
    at = (100, 40)
    heat = grad_cam(patch_model, _image(np.random.default_rng(3), at), class_index=NO_PATCH).heatmap
    inside = np.zeros_like(heat, dtype=bool)
    inside[at[0]:at[0] + PATCH[0], at[1]:at[1] + PATCH[1]] = True
    assert heat[inside].mean() <= heat[~inside].mean()


def _hooks(model):
    return [
        hooks for module in model.modules()
        for hooks in (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks)
        if hooks
    ]


def test_model_left_untouched_and_no_hooks_left(patch_model):
    model = patch_model.train()  # even a model in training mode: BatchNorm statistics must not move
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with torch.inference_mode():  # a caller in inference mode still gets gradients
            grad_cam(model, _image(np.random.default_rng(4), (30, 30)))
        with pytest.raises(IndexError):
            grad_cam(model, _image(np.random.default_rng(4)), class_index=5)  # fails inside the hooks
        assert model.training
        assert not _hooks(model)
        assert all(p.grad is None for p in model.parameters())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    finally:
        model.eval()


def test_overlay_is_an_rgb_photo_tinted_by_the_heat():
    photo = Image.new("RGB", (40, 30), (128, 128, 128))
    heat = np.zeros((10, 10), dtype=np.float32)
    heat[:, 5:] = 1.0  # hot right half
    tinted = overlay(photo, heat, alpha=0.5, colormap="jet")
    assert tinted.mode == "RGB"
    assert tinted.size == photo.size
    left, right = np.asarray(tinted)[15, 2], np.asarray(tinted)[15, 37]
    assert right[0] > right[2]
    assert left[2] > left[0]
    assert np.array_equal(np.asarray(overlay(photo, heat, alpha=0.0)), np.asarray(photo))


def test_explain_image_through_a_predictor(checkpoint_file):
    predictor = Predictor(checkpoint_file)
    photo = image_bytes(size=(96, 64))
    explanation, shown = explain_image(predictor, io.BytesIO(photo))
    size = predictor.checkpoint.image_size
    assert explanation.heatmap.shape == (size, size)
    assert shown.size == (size, size)
    assert shown.mode == "RGB"
    top = predictor.classify(io.BytesIO(photo), k=1).top_k[0]
    assert predictor.classes[explanation.class_index] == top.label
    assert explanation.probability == pytest.approx(top.probability, abs=1e-5)
