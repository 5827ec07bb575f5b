"""Examples of the API's answers, for its schema (``api.schema``): one photo, as its
answers show it, in each of the shapes that carry it."""
from __future__ import annotations

SITE = "https://petsite.example"
INSTANCE = "/api/v1/images/7/"  # the path a problem names, in the examples

IMAGE = {
    "id": 7, "url": f"{SITE}/api/v1/images/7/", "status": "done", "status_display": "Done", "finished": True,
    "message": "", "error_code": "", "predicted_breed": "pug", "breed_name": "Pug", "verdict": "confident",
    "verdict_display": "Confident", "headline": "Pug", "confident": True, "confidence": 0.9132,
    "top_k": [{"breed": "pug", "name": "Pug", "probability": 0.9132},
              {"breed": "boxer", "name": "Boxer", "probability": 0.0511}],
    "display": {"note": "", "top_k_title": "The likeliest breeds", "top_k_bars": True,
                "correct_choice": "Correct, it is a Pug",
                "heatmap_alt": "Heatmap of where the model found the most evidence for Pug",
                "uploaded": "just now"},
    "model_version": "resnet34-v3", "classified_at": "2026-12-04T09:03:18.682783Z",
    "uploaded_at": "2026-12-04T09:03:18.600999Z", "detail_url": f"{SITE}/images/7/",
    "thumbnail_url": f"{SITE}/images/7/thumbnail/", "heatmap_url": None, "original_name": "rex.jpg",
    "width": 1024, "height": 768, "is_correct": None, "true_label": "", "true_label_name": "", "feedback_at": None,
    "files": {"file": f"{SITE}/api/v1/images/7/file/", "thumbnail": f"{SITE}/api/v1/images/7/thumbnail/",
              "heatmap": None},
}
ANSWERED = {**IMAGE, "is_correct": False, "true_label": "beagle", "true_label_name": "Beagle",
            "feedback_at": "2026-12-04T09:05:02.118207Z"}
UPLOAD = {
    "files": [
        {"name": "rex.jpg", "ok": True, "created": True, "error": "", "code": None,
         "image": {**IMAGE, "status": "pending", "status_display": "Waiting", "finished": False,
                   "predicted_breed": "", "breed_name": "", "verdict": "", "verdict_display": "None yet",
                   "headline": "", "confident": False, "confidence": None, "top_k": [], "classified_at": None,
                   "model_version": None}},
        {"name": "notes.txt", "ok": False, "created": False, "code": "not_an_image", "image": None,
         "error": "This file is not an image we can read; upload a JPEG, PNG, WebP, GIF, BMP, HEIC or AVIF photo."},
    ],
    "summary": "1 photo uploaded, 1 refused: notes.txt (This file is not an image we can read; upload a JPEG, PNG, "
               "WebP, GIF, BMP, HEIC or AVIF photo).",
}
MODEL = {"name": "resnet34-v3", "url": f"{SITE}/api/v1/models/resnet34-v3/",
         "page_url": f"{SITE}/models/resnet34-v3/", "is_active": True, "created_at": "2026-12-01T10:00:00Z",
         "image_size": 224, "accuracy": 0.9312, "notes": "full recipe, 12 epochs"}
MODEL_DETAIL = {
    **MODEL, "classes": ["Abyssinian", "…", "yorkshire_terrier"],
    "metrics": {"accuracy": 0.9312, "top5_accuracy": 0.9951, "per_class": [
        {"class": "pug", "name": "Pug", "precision": 0.96, "recall": 0.94, "f1": 0.95, "support": 100}]},
    "training_args": {"recipe": "full", "epochs": 12}, "history": {
        "precision": "bf16", "epochs": [{"epoch": 1, "stage": "head", "train_loss": 1.12, "accuracy": 0.88}]},
    "figures": {"confusion_matrix": f"{SITE}/models/resnet34-v3/figures/confusion_matrix.png"},
}


def page(result: dict) -> dict:
    return {"count": 1, "next": None, "previous": None, "results": [result]}


SUCCESS = {  # (operationId, status): the example of that answer
    ("images_list", "200"): page(IMAGE),
    ("images_create", "202"): UPLOAD,
    ("images_retrieve", "200"): IMAGE,
    ("images_feedback_create", "200"): ANSWERED,
    ("images_explain_create", "200"): {**IMAGE, "heatmap_url": f"{SITE}/images/7/heatmap/",
                                       "files": {**IMAGE["files"], "heatmap": f"{SITE}/api/v1/images/7/heatmap/"}},
    ("images_explain_create", "202"): IMAGE,
    ("models_list", "200"): page(MODEL),
    ("models_retrieve", "200"): MODEL_DETAIL,
}
