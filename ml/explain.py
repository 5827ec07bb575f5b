"""Grad-CAM: where in the photo the model found the evidence for a breed.

Selvaraju et al. (2017): weight each channel of the last convolutional block's output
(ResNet's ``layer4``) by the mean gradient of the class score with respect to it, sum,
keep the positive part, and scale it up to the input. Where the heatmap is hot, more
of that pattern would raise the class score; a model that looks at the background
instead of the pet shows it at once.

Hooks catch the block's output and are removed in a ``finally``; the gradient is taken
with ``torch.autograd.grad`` with respect to that output only, so no parameter's
``.grad`` is written, and the model runs in eval mode (BatchNorm statistics do not
move). The model is left exactly as it was found.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from .data import ImageSource, open_image

if TYPE_CHECKING:
    from .inference import Predictor


class Explanation(NamedTuple):
    heatmap: np.ndarray  # H x W float32 in [0, 1], the size of the model's input
    class_index: int  # the class explained
    probability: float  # the model's probability for that class


def grad_cam(
    model: nn.Module, image: torch.Tensor, class_index: int | None = None, layer: nn.Module | None = None
) -> Explanation:
    """Grad-CAM heatmap of ``image`` (a preprocessed C x H x W or 1 x C x H x W tensor) for
    ``class_index`` (default: the predicted class) at ``layer`` (default: ``model.layer4``).

    The heatmap is divided by its maximum, so 1 is the hottest place; all zeros when no
    place raises the class score.
    """
    layer = model.layer4 if layer is None else layer
    x = image if image.dim() == 4 else image.unsqueeze(0)
    if x.shape[0] != 1:
        raise ValueError(f"grad_cam explains one image at a time, got a batch of {x.shape[0]}.")
    caught: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: caught.append(output))
    was_training = model.training
    try:
        model.eval()
        # Outside inference mode, even if the caller is in it: a clone of an inference
        # tensor is an ordinary one that autograd can use.
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().to(next(model.parameters()).device)
            logits = model(x)
            index = int(logits[0].argmax()) if class_index is None else int(class_index)
            probability = logits[0].float().softmax(dim=0)[index].item()
            (gradients,) = torch.autograd.grad(logits[0, index], caught[0])
    finally:
        handle.remove()
        model.train(was_training)
    activations = caught[0].detach()[0].float()
    weights = gradients[0].float().mean(dim=(1, 2))  # one weight per channel: mean gradient over the map
    cam = F.relu((weights[:, None, None] * activations).sum(dim=0))
    cam = F.interpolate(cam[None, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    cam = cam / peak if peak > 0 else torch.zeros_like(cam)
    return Explanation(cam.clamp(0, 1).cpu().numpy().astype(np.float32), index, probability)


def overlay(photo: Image.Image, heatmap: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> Image.Image:
    """``photo`` with ``heatmap`` laid over it in ``colormap`` colours (opacity ``alpha``), as RGB.

    The heatmap is stretched to the photo's size: give the photo as the model saw it
    (see :func:`explain_image`), not an uncropped original.
    """
    photo = photo.convert("RGB")
    heat = Image.fromarray(np.clip(heatmap * 255, 0, 255).astype(np.uint8), mode="L")
    heat = np.asarray(heat.resize(photo.size, Image.Resampling.BILINEAR), dtype=np.float32) / 255
    colours = matplotlib.colormaps[colormap](heat)[..., :3]
    blended = (1 - alpha) * np.asarray(photo, dtype=np.float32) / 255 + alpha * colours
    return Image.fromarray(np.clip(blended * 255 + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def explain_image(
    predictor: Predictor, image: ImageSource, class_index: int | None = None, alpha: float = 0.5
) -> tuple[Explanation, Image.Image]:
    """Grad-CAM of one photo through ``predictor``'s model and preprocessing, and the overlay
    on the photo resized and centre-cropped exactly as the model saw it."""
    checkpoint = predictor.checkpoint
    photo = open_image(image, min_size=checkpoint.resize_size)
    explanation = grad_cam(predictor.model, predictor.transform(photo), class_index)
    seen = v2.Compose([v2.Resize(checkpoint.resize_size, antialias=True), v2.CenterCrop(checkpoint.image_size)])
    return explanation, overlay(seen(photo), explanation.heatmap, alpha)
