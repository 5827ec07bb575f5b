"""The admin as a review queue: images that need a look first, one-click review actions."""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from petsite.dates import when
from registry.models import ModelVersion
from registry.services import NoActiveModel

from . import review, tasks
from .models import LABEL_CHOICES, NOT_A_PET, Classification, PetImage


class ReviewFilter(admin.SimpleListFilter):
    title = "review"
    parameter_name = "review"

    def lookups(self, request, model_admin):
        return [("needed", "Needs review"), ("done", "Reviewed"), ("not_done", "Not reviewed")]

    def queryset(self, request, queryset):
        return {
            "needed": lambda: queryset.filter(needs_review=True),
            "done": lambda: queryset.filter(reviewed_at__isnull=False),
            "not_done": lambda: queryset.filter(reviewed_at__isnull=True),
        }.get(self.value(), lambda: queryset)()


class FeedbackFilter(admin.SimpleListFilter):
    title = "owner's answer"
    parameter_name = "feedback"

    def lookups(self, request, model_admin):
        return [("none", "None"), ("correct", "Correct"), ("wrong", "Wrong")]

    def queryset(self, request, queryset):
        values = {"none": None, "correct": True, "wrong": False}
        return queryset.filter(is_correct=values[self.value()]) if self.value() in values else queryset


class ModelVersionFilter(admin.SimpleListFilter):
    """The model version that classified the photo, listed by name only: Django's related
    filter would load every version with its metrics and history, large JSON documents."""

    title = "model version"
    parameter_name = "model_version__id__exact"  # the name of Django's related filter: links keep working

    def lookups(self, request, model_admin):
        return list(ModelVersion.objects.order_by("-created_at").values_list("pk", "name"))

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(model_version_id=int(value)) if value and value.isdigit() else queryset


class ReviewQueueList(ChangeList):
    """The list of photos without the columns it never shows: the top five and the verdict's
    scores are JSON documents, parsed for every row otherwise (the change page has them)."""

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).defer("top_k", "verdict_scores")


# A model version's report: JSON documents of hundreds of kilobytes, for its own page only.
VERSION_REPORT = [f"model_version__{name}" for name in ("metrics", "history", "training_args", "figures", "classes")]


class ReviewActionForm(helpers.ActionForm):
    label = forms.ChoiceField(choices=[("", "Label for “Set label”…")] + LABEL_CHOICES, required=False)


class ClassificationInline(admin.TabularInline):
    model = Classification
    fields = ["created_at", "model_version", "predicted_breed", "confidence"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Prediction history"

    def get_queryset(self, request):
        # Each row names its model version: one join, without the version's large JSON report.
        return super().get_queryset(request).select_related("model_version").defer(*VERSION_REPORT)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PetImage)
class PetImageAdmin(admin.ModelAdmin):
    # The review columns first after the photo, so that they stay in view at 1280 px beside
    # the filters; the model version is a filter, the file name is on the change page.
    list_display = [
        "preview", "prediction", "verdict", "confidence_percent", "owner_answer", "reviewed_label", "queue_reason",
        "status", "owner", "uploaded",
    ]
    list_display_links = ["preview", "prediction"]
    list_filter = [
        ReviewFilter, "status", "verdict", FeedbackFilter, ModelVersionFilter, "predicted_breed", "reviewed_label"
    ]
    search_fields = ["owner__username", "owner__email", "original_name", "sha256"]
    date_hierarchy = "uploaded_at"
    # One query for the page's rows, whatever their number (tests/classifier/test_admin_list.py;
    # bench/admin_list.py measures it with 10,000 photos): the owner is the only relation shown.
    list_select_related = ["owner"]
    list_per_page = 50
    action_form = ReviewActionForm
    actions = ["confirm_prediction", "accept_owner_answer", "set_label", "mark_not_a_pet", "rerun_classification"]
    inlines = [ClassificationInline]

    class Media:
        css = {"all": ["css/admin.css"]}  # the preview's and the top five's styles (no inline style: the CSP)

    fieldsets = [
        (None, {"fields": ["preview", "owner", "original_name", "uploaded_at", "width", "height", "sha256"]}),
        ("Prediction", {"fields": [
            "status", "error_message", "predicted_breed", "confidence_percent", "verdict", "verdict_scores",
            "top_five", "model_version", "classified_at",
            "attempts", "claimed_at", "claimed_by", "enqueued_at", "enqueue_count",
        ]}),
        ("Owner's answer", {"fields": ["is_correct", "true_breed", "feedback_at"]}),
        ("Review", {"fields": ["reviewed_label", "reviewed_by", "reviewed_at"]}),
    ]
    # Everything is the record of an upload, its classification and its answers: only the
    # reviewer's label is edited here.
    readonly_fields = [name for _, options in fieldsets for name in options["fields"] if name != "reviewed_label"]

    def get_queryset(self, request):
        # Annotate before ordering: the default get_queryset orders first.
        return review.review_queue().order_by(*self.get_ordering(request))

    def get_ordering(self, request):
        # The review queue's order (classifier.review): the owner said wrong, then the
        # model was not sure, then low confidence; the newest first in each.
        return review.QUEUE_ORDER

    def get_changelist(self, request, **kwargs):
        return ReviewQueueList

    def has_add_permission(self, request):
        return False  # images come from uploads

    def has_review_permission(self, request) -> bool:
        """The review actions and the review label need ``classifier.review_petimage`` (the Reviewers group)."""
        return request.user.has_perm(f"{self.opts.app_label}.review_{self.opts.model_name}")

    def get_readonly_fields(self, request, obj=None):
        # Changing a photo's record is not reviewing it: the label needs the review permission.
        readonly = super().get_readonly_fields(request, obj)
        return readonly if self.has_review_permission(request) else [*readonly, "reviewed_label"]

    def save_model(self, request, obj, form, change):
        if "reviewed_label" in form.changed_data:
            obj.reviewed_by = request.user if obj.reviewed_label else None
            obj.reviewed_at = timezone.now() if obj.reviewed_label else None
        super().save_model(request, obj, form, change)

    # --- columns -------------------------------------------------------------------------

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj: PetImage) -> str:
        """Django's own checkbox, written directly: its form widget takes a template render
        per row, a fifth of the list's time."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME, obj.pk, f"Select this object for an action - {obj}",
        )

    @admin.display(description="Image")
    def preview(self, obj: PetImage) -> str:
        if not obj.thumbnail:
            return "-"
        alt = f"{obj.get_predicted_breed_display() or 'Photo'}, uploaded {self.uploaded(obj)}"
        url = reverse("classifier:thumbnail", args=[obj.pk])
        # Lazy: the browser fetches the thumbnails of the rows in view, not the whole page's at once.
        return format_html('<img class="petsite-preview" src="{}" alt="{}" loading="lazy" decoding="async">', url, alt)

    @admin.display(description="Prediction", ordering="predicted_breed")
    def prediction(self, obj: PetImage) -> str:
        return obj.get_predicted_breed_display() if obj.predicted_breed else "-"

    @admin.display(description="Confidence", ordering="confidence")
    def confidence_percent(self, obj: PetImage) -> str:
        return "-" if obj.confidence is None else f"{obj.confidence:.0%}"

    @admin.display(description="Top 5")
    def top_five(self, obj: PetImage) -> str:
        """The model's five likeliest breeds, one a line with its probability, instead of raw JSON."""
        if not obj.top_k:
            return "-"
        rows = ((row["name"], f"{row['probability']:.1%}") for row in obj.top_k_display())
        items = format_html_join("", "<li>{} ({})</li>", rows)
        return format_html('<ol class="petsite-top-five">{}</ol>', items)

    @admin.display(description="Owner said")
    def owner_answer(self, obj: PetImage) -> str:
        if obj.is_correct is None:
            return "-"
        if obj.is_correct:
            return "correct"
        return "wrong: not a cat or dog" if obj.true_breed == NOT_A_PET else f"wrong: {obj.get_true_breed_display()}"

    @admin.display(description="Uploaded", ordering="uploaded_at")
    def uploaded(self, obj: PetImage) -> str:
        return when(obj.uploaded_at)  # the site's one date style, as in the gallery

    @admin.display(description="Waits for review", ordering="review_reason")
    def queue_reason(self, obj: PetImage) -> str:
        """Why the photo is where it is in the queue (the reason the order sorts on)."""
        return review.QueueReason(obj.review_reason).label

    # --- review actions --------------------------------------------------------------------

    def _report(self, request, done: int, total: int, what: str) -> None:
        skipped = f" ({total - done} skipped: {what})" if done < total else ""
        self.message_user(request, f"Reviewed {done} image{'s' if done != 1 else ''}{skipped}.")

    @admin.action(description="Review: the prediction is right", permissions=["review"])
    def confirm_prediction(self, request, queryset):
        self._report(request, review.confirm_predictions(queryset, request.user), queryset.count(), "no prediction")

    @admin.action(description="Review: accept the owner's answer", permissions=["review"])
    def accept_owner_answer(self, request, queryset):
        self._report(
            request, review.accept_owner_answers(queryset, request.user), queryset.count(), "no owner's answer"
        )

    @admin.action(description="Review: set the label chosen beside the actions", permissions=["review"])
    def set_label(self, request, queryset):
        label = request.POST.get("label", "")
        if not label:
            self.message_user(request, "Choose a label in the box beside the action first.", messages.ERROR)
            return
        self._report(request, review.set_label(queryset, label, request.user), queryset.count(), "")

    @admin.action(description="Review: not a cat or dog", permissions=["review"])
    def mark_not_a_pet(self, request, queryset):
        self._report(request, review.set_label(queryset, NOT_A_PET, request.user), queryset.count(), "")

    @admin.action(description="Classify again with the active model", permissions=["change"])
    def rerun_classification(self, request, queryset):
        try:
            chunks = tasks.reclassify(queryset)
        except NoActiveModel as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        count = sum(len(c) for c in chunks)
        self.message_user(
            request, f"Sent {count} image{'s' if count != 1 else ''} to the workers in {len(chunks)} chunk(s)."
        )
