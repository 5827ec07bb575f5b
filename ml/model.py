"""ResNet34 with a new classification head, and the layer groups used for fine-tuning.

Weights come from torchvision's weights API (its cache under ``TORCH_HOME``, or a
download, but only when asked: ``download=True``, the commands' ``--download``) or from a
local ``.pth`` file; a missing file is an error that says how to supply one, never a
silent fall-back to random weights, and never an unasked-for download.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import ResNet, ResNet34_Weights, resnet34

IMAGENET = "imagenet"
ARCH = "resnet34"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be loaded."""


def imagenet_weights_cache_path() -> Path:
    """Where torchvision looks for the ImageNet ResNet34 file before downloading it."""
    filename = os.path.basename(ResNet34_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_weights_missing_message() -> str:
    """How to get the ImageNet weights, for a staff user at a shell."""
    url = ResNet34_Weights.IMAGENET1K_V1.url
    return (
        "ImageNet weights for ResNet34 are not on this machine, and nothing is downloaded unless asked. "
        f"Add --download to the command (torchvision then fetches {url} into {imagenet_weights_cache_path()}), "
        "or put that file there yourself (TORCH_HOME moves the folder), or pass a local copy with --weights PATH, "
        "or train from scratch with --no-pretrained."
    )


def fetch_imagenet_weights(download: bool = False) -> Path:
    """The cached ImageNet ResNet34 file, downloaded first only if ``download`` asks for it."""
    path = imagenet_weights_cache_path()
    if not path.is_file():
        if not download:
            raise WeightsUnavailableError(imagenet_weights_missing_message())
        _imagenet_state_dict(download=True)
    return path


def _imagenet_state_dict(download: bool = False) -> dict[str, torch.Tensor]:
    if not download and not imagenet_weights_cache_path().is_file():
        raise WeightsUnavailableError(imagenet_weights_missing_message())
    try:  # torchvision reads its cached file, and downloads only where it is missing
        return ResNet34_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except (URLError, OSError, RuntimeError) as exc:
        raise WeightsUnavailableError(
            "ImageNet weights for ResNet34 could not be loaded "
            f"({exc.__class__.__name__}: {exc}). Either put the file "
            f"{os.path.basename(ResNet34_Weights.IMAGENET1K_V1.url)} (from "
            f"{ResNet34_Weights.IMAGENET1K_V1.url}) at {imagenet_weights_cache_path()}, "
            "or pass a local file with --weights PATH, or train from scratch with --no-pretrained."
        ) from exc


def _file_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"Weights file {path} does not exist. Pass the path of a torchvision ResNet34 "
            "state dict (for example resnet34-b627a593.pth), or use --no-pretrained."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsUnavailableError(f"Could not read weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path} does not hold a state dict.")
    return state


def build_resnet34(
    num_classes: int = 37, weights: str | os.PathLike | None = IMAGENET, *, download: bool = False
) -> ResNet:
    """A torchvision ResNet34 whose ``fc`` is a new ``num_classes`` head.

    ``weights`` is ``"imagenet"`` (torchvision's IMAGENET1K_V1), a path to a local
    state dict, or ``None`` for random initialisation (an explicit choice, for tests
    and for training from scratch). ImageNet weights missing from torchvision's cache
    are downloaded only with ``download=True``. The body's weights are loaded strictly: a file for
    another architecture is an error, only its classification layer is ignored.
    """
    # Residual blocks start as the identity (their last BatchNorm scale is 0): a network
    # trained from random weights then learns much sooner; loaded weights overwrite it.
    model = resnet34(weights=None, zero_init_residual=True)
    if weights is not None:
        state = _imagenet_state_dict(download) if weights == IMAGENET else _file_state_dict(weights)
        body_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(body_state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise WeightsUnavailableError(
                f"Weights do not fit ResNet34: missing {missing[:5]}, unexpected {unexpected[:5]}."
            )
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def body_map(model: ResNet, images: torch.Tensor) -> torch.Tensor:
    """The body's last feature map (N x 512 x h x w): torchvision's ``ResNet._forward_impl`` up
    to ``layer4``. Written out once here, rather than caught by a hook, so that
    ``torch.compile`` and the ONNX exporter see one plain graph, and a backend can run the
    body under its own precision (``ml.backends``)."""
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(images))))
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def pool_and_classify(model: ResNet, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) from the body's last feature map: the pooled, flattened 512 numbers
    that ``model.fc`` receives (what ``ml.calibration`` fits its statistics on), and its output."""
    features = torch.flatten(model.avgpool(feature_map), 1)
    return features, model.fc(features)


def features_and_logits(model: ResNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate features, logits) of ``images`` in one forward pass: the ResNet's forward
    pass, the same operations as ``model(images)``, with the input of ``model.fc`` kept."""
    return pool_and_classify(model, body_map(model, images))


def layer_groups(model: ResNet) -> list[list[nn.Parameter]]:
    """Parameters split as fastai splits a ResNet: early body, late body, head.

    Discriminative learning rates give each group its own rate, smallest first:
    early layers hold generic features that need little change.
    """
    early = [model.conv1, model.bn1, model.layer1, model.layer2]
    late = [model.layer3, model.layer4]
    return [
        [p for m in early for p in m.parameters()],
        [p for m in late for p in m.parameters()],
        list(model.fc.parameters()),
    ]


def freeze_body(model: ResNet, train_bn: bool = True) -> None:
    """Train only the head (and, by default, BatchNorm layers, as fastai does).

    BatchNorm statistics of ImageNet do not match a new dataset exactly; letting their
    affine parameters adapt while the convolutions stay frozen is what makes the
    frozen stage work well.
    """
    for module in model.modules():
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
        for p in module.parameters(recurse=False):
            p.requires_grad = bool(train_bn and is_bn)
    for p in model.fc.parameters():
        p.requires_grad = True


def unfreeze(model: ResNet) -> None:
    for p in model.parameters():
        p.requires_grad = True
