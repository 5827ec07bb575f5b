"""Pages of training runs (staff): the list with the start form, a run's live page, cancel, promote."""
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from classifier.models import PetImage
from registry import services as registry_services

from . import comparison, services, tasks
from .forms import PromoteForm, TrainingForm
from .models import TrainingRun


@login_required
@permission_required("training.view_trainingrun", raise_exception=True)
@require_http_methods(["GET", "POST"])
def run_list(request: HttpRequest) -> HttpResponse:
    """Start a run (POST, with the permission to add runs), and the list of runs."""
    has_active = registry_services.active_version() is not None
    form = TrainingForm(request.POST or None, has_active_model=has_active)
    if request.method == "POST":
        if not request.user.has_perm("training.add_trainingrun"):
            raise PermissionDenied
        if form.is_valid():
            try:
                run = services.start_run(request.user, **form.cleaned_data)
            except services.TrainingError as exc:
                form.add_error(None, str(exc))
            else:
                tasks.train_model.delay_on_commit(run.pk)
                messages.success(request, "Training started. This page follows it.")
                return redirect(run)
    context = {
        "form": form,
        "current": services.current_run(),
        "runs": TrainingRun.objects.select_related("result", "base_version", "requested_by")[:50],
        "dataset_dir": settings.PETSITE_DATASET_DIR,
        "dataset_problems": services.dataset_problems(),
        "reviewed": {"training": comparison.training_set().count(), "check": comparison.check_set().count()},
    }
    return render(request, "training/runs.html", context, status=400 if form.errors else 200)


def _run_or_404(pk: int) -> TrainingRun:
    return get_object_or_404(TrainingRun.objects.select_related("result", "base_version", "requested_by"), pk=pk)


@login_required
@permission_required("training.view_trainingrun", raise_exception=True)
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_page(request, _run_or_404(pk), PromoteForm())


def _run_page(request: HttpRequest, run: TrainingRun, promote_form: PromoteForm, status: int = 200) -> HttpResponse:
    check = run.comparison.get("sets", {}).get("check", {})
    changed = PetImage.objects.in_bulk(check.get("right_to_wrong", []) + check.get("wrong_to_right", []))
    context = {
        "run": run,
        "status": services.run_status(run),
        "check": check,
        "test": run.comparison.get("sets", {}).get("test"),
        "right_to_wrong": [changed[pk] for pk in check.get("right_to_wrong", []) if pk in changed],
        "wrong_to_right": [changed[pk] for pk in check.get("wrong_to_right", []) if pk in changed],
        "promote_form": promote_form,
    }
    return render(request, "training/run.html", context, status=status)


@login_required
@permission_required("training.view_trainingrun", raise_exception=True)
@require_GET
def run_status_json(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(services.run_status(_run_or_404(pk)))


@login_required
@permission_required("training.add_trainingrun", raise_exception=True)
@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run_or_404(pk)
    try:
        services.cancel(run)
    except services.TrainingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Cancelling: the run stops at its next step, and registers no model.")
    return redirect(run)


@login_required
@permission_required("registry.change_modelversion", raise_exception=True)
@require_POST
def run_promote(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run_or_404(pk)
    form = PromoteForm(request.POST)
    form.is_valid()  # one optional checkbox: always valid
    try:
        version = services.promote(run, confirmed=form.cleaned_data.get("confirm", False))
    except services.TrainingError as exc:
        if exc.code == services.TrainingError.NEEDS_CONFIRMATION:  # said beside the box, where the eye is
            form.add_error("confirm", str(exc))
            return _run_page(request, run, form, status=400)
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{version.name} is now the active model; photos waiting for a model are sent to it.")
    return redirect(run)
