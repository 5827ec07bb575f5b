"""The API's addresses: version 1 under ``/api/v1/``, the same views under ``/api/`` (the
unversioned alias kept for clients written before versions), and the pages for people.

``reverse("api:image-list")`` names the v1 address, so every URL the API answers with
(``url``, ``files.*``, ``Location``, ``Link``) is a v1 URL whichever address was asked;
the alias's names live in the nested namespace ``api:unversioned``, which the schema
leaves out (``api.schema_headers.only_v1``): it lists each endpoint once, under v1.
The pages for people (the docs, the schema, the token page) are not versioned: they
stay at ``/api/docs/``, ``/api/schema/`` and ``/api/token/``.
"""
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from petsite import errors

from . import docs, views

VERSION = "v1"


def endpoints(prefix: str = "") -> list:
    """The API's endpoints, each address under ``prefix``."""
    return [
        path(f"{prefix}images/", views.ImageList.as_view(), name="image-list"),
        path(f"{prefix}images/<int:pk>/", views.ImageDetail.as_view(), name="image-detail"),
        path(f"{prefix}images/<int:pk>/feedback/", views.ImageFeedback.as_view(), name="image-feedback"),
        path(f"{prefix}images/<int:pk>/file/", views.ImageFile.as_view(), {"kind": "image"}, name="image-file"),
        path(f"{prefix}images/<int:pk>/thumbnail/", views.ImageFile.as_view(), {"kind": "thumbnail"},
             name="image-thumbnail"),
        path(f"{prefix}images/<int:pk>/heatmap/", views.ImageFile.as_view(), {"kind": "heatmap"},
             name="image-heatmap"),
        path(f"{prefix}images/<int:pk>/explain/", views.ImageExplain.as_view(), name="image-explain"),  # POST
        path(f"{prefix}models/", views.ModelList.as_view(), name="model-list"),
        path(f"{prefix}models/<slug:name>/", views.ModelDetail.as_view(), name="model-detail"),
    ]


app_name = "api"
urlpatterns = [
    *endpoints(f"{VERSION}/"),
    # The OpenAPI 3 schema, and the documentation page made from it on the server (api/docs.py).
    path("schema/", docs.SchemaView.as_view(), name="schema"),
    path("docs/", docs.docs_page, name="docs"),
    # The user's token, on a page of the site.
    path("token/", views.token_settings, name="token"),
    # The unversioned alias: the same views, answering with v1 URLs.
    path("", include((endpoints(), "unversioned"))),
    # Last: any other address under /api/ is a problem+json 404, with DEBUG too (whose own
    # 404 page, the one handler404 replaces without it, is HTML); CSRF-exempt, or a token
    # client's POST to a wrong address would be told about CSRF instead.
    re_path(r"", csrf_exempt(errors.page_not_found), {"exception": None}, name="not-found"),
]
