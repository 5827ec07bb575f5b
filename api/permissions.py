"""Who may call what: the site's permission rules, as DRF permission classes.

Images need no class of their own: every image view starts from the requester's own
images (``api.views.own_images``), so another user's id answers 404, as on the site.
"""
from rest_framework.permissions import BasePermission


class CanViewModelVersions(BasePermission):
    """The permission the site's model pages need (``registry.view_modelversion``; the Reviewers
    group has it), checked after ``IsAuthenticated`` so that anonymous callers get 401."""

    message = "Model versions are shown to reviewers and staff with the permission to view them."

    def has_permission(self, request, view) -> bool:
        return request.user.has_perm("registry.view_modelversion")
