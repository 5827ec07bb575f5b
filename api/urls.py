from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from petsite import errors

from . import docs, views

app_name = "api"
urlpatterns = [
    path("images/", views.ImageList.as_view(), name="image-list"),
    path("images/<int:pk>/", views.ImageDetail.as_view(), name="image-detail"),
    path("images/<int:pk>/feedback/", views.ImageFeedback.as_view(), name="image-feedback"),
    path("images/<int:pk>/file/", views.ImageFile.as_view(), {"kind": "image"}, name="image-file"),
    path("images/<int:pk>/thumbnail/", views.ImageFile.as_view(), {"kind": "thumbnail"}, name="image-thumbnail"),
    path("images/<int:pk>/heatmap/", views.ImageFile.as_view(), {"kind": "heatmap"}, name="image-heatmap"),
    path("images/<int:pk>/explain/", views.ImageExplain.as_view(), name="image-explain"),  # POST: ask for it
    path("models/", views.ModelList.as_view(), name="model-list"),
    path("models/<slug:name>/", views.ModelDetail.as_view(), name="model-detail"),
    # The OpenAPI 3 schema, and the documentation page made from it on the server (api/docs.py).
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", docs.docs_page, name="docs"),
    # The user's token, on a page of the site.
    path("token/", views.token_settings, name="token"),
    # Last: any other address under /api/ is a problem+json 404, with DEBUG too (whose own
    # 404 page, the one handler404 replaces without it, is HTML).
    re_path(r"", errors.page_not_found, {"exception": None}, name="not-found"),
]
