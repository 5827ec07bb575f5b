"""Staff pages for model versions: the whole training report of each, in the product.

Each page needs ``registry.view_modelversion`` (the Reviewers group has it): anonymous users
are sent to log in, users without it get 403. Making a version the active one needs
``registry.change_modelversion`` (superusers, or whoever is granted it), as in the admin.
"""
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ml import progress
from ml.breeds import display_name

from . import services
from .models import ModelVersion, Verdict

FIGURE_TITLES = {
    "loss": "Loss (train and validation)",
    "accuracy": "Accuracy and error rate per epoch",
    "lr_schedule": "Learning-rate schedule",
    "confusion_matrix": "Confusion matrix",
    "most_confused": "Most confused breeds",
    "top_losses": "Top losses",
    "sample_predictions": "Sample predictions",
}


@login_required
@permission_required("registry.view_modelversion", raise_exception=True)
def model_list(request):
    versions = ModelVersion.objects.all()
    has_active = any(v.is_active for v in versions)  # no active model: the page says how to get one
    return render(request, "registry/model_list.html", {"versions": versions, "has_active": has_active})


@login_required
@permission_required("registry.view_modelversion", raise_exception=True)
def model_detail(request, name: str):
    version = get_object_or_404(ModelVersion, name=name)
    metrics = version.metrics
    figures = [
        (key, FIGURE_TITLES.get(key, key.replace("_", " ").capitalize()))
        for key in FIGURE_TITLES
        if key in version.figures
    ]
    figures += [(key, key.replace("_", " ").capitalize()) for key in version.figures if key not in FIGURE_TITLES]
    confused = [
        {"actual": display_name(pair["actual"]), "predicted": display_name(pair["predicted"]), "count": pair["count"]}
        for pair in metrics.get("most_confused", [])
    ]
    per_class = sorted(metrics.get("per_class", []), key=lambda row: row["f1"])
    accuracy_by_verdict = metrics.get("calibration", {}).get("accuracy_by_verdict", {})
    verdicts = [
        {"name": label, "count": metrics["verdicts"].get(value, 0), "accuracy": accuracy_by_verdict.get(value)}
        for value, label in Verdict.choices
    ] if metrics.get("verdicts") else []
    return render(
        request,
        "registry/model_detail.html",
        {
            "version": version,
            "metrics": metrics,
            "figures": figures,
            "confused": confused,
            "per_class": per_class,
            "verdicts": verdicts,
            # the columns fastai prints per epoch, the stage in words as on the training run's page
            "epochs": [{**row, "stage_label": progress.epoch_label(row.get("stage", ""))}
                       for row in version.history.get("epochs", [])],
            "warmups": version.warmups.all(),  # each worker machine's backend for this model
        },
    )


@login_required
@permission_required("registry.view_modelversion", raise_exception=True)
def model_figure(request, name: str, figure: str):
    version = get_object_or_404(ModelVersion, name=name)
    path = version.figures.get(figure)
    if not path:
        raise Http404("No such figure.")
    try:
        return FileResponse(version.file.storage.open(path, "rb"), content_type="image/png")
    except FileNotFoundError:
        raise Http404("The figure is missing from storage.") from None


@login_required
@permission_required("registry.change_modelversion", raise_exception=True)
@require_POST
def model_activate(request: HttpRequest, name: str) -> HttpResponse:
    """The models page's "Make active" button: the version classifies every new photo from
    now on, and the photos waiting for a model are sent to it (``services.activate_version``)."""
    version = get_object_or_404(ModelVersion, name=name)
    if version.is_active:
        messages.info(request, f"{version.name} is already the active model.")
    else:
        services.activate_version(version)
        messages.success(request, f"{version.name} is now the active model: new photos, and those waiting for a "
                                  "model, are classified by it.")
    return redirect("registry:model_list")
