"""The webhook section of the token page (``api:token``): its forms post here, and every
action redirects back there. A new secret is shown once, as a new API token is: the
session carries it to the next view of the page (``templatetags/webhooks.py``)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from . import services, tasks
from .forms import EndpointForm

NEW_SECRET = "webhooks_new_secret"  # noqa: S105 - a session key. the session holds a new secret until the page shows it, once
REFUSED_URL = "webhooks_refused_url"  # and a refused URL, for the form to show it with its error


@login_required
@require_POST
def endpoint(request: HttpRequest) -> HttpResponse:
    """Save the endpoint's URL, rotate its secret, send a test event, or delete it."""
    action = request.POST.get("action")
    current = services.endpoint_of(request.user)
    if action == "save":
        form = EndpointForm(request.POST, instance=current)
        if not form.is_valid():
            request.session[REFUSED_URL] = request.POST.get("url", "")
            return redirect("api:token")
        _, secret = services.register(request.user, form.cleaned_data["url"], request.build_absolute_uri("/"))
        if secret:
            request.session[NEW_SECRET] = secret
        messages.success(request, "Your webhook endpoint is saved." + (" Copy its secret now." if secret else ""))
    elif current is None:
        pass  # nothing to rotate, test or delete (another tab deleted it)
    elif action == "rotate":
        request.session[NEW_SECRET] = services.rotate_secret(current)
        messages.success(request, "Your webhook secret is replaced: the old one no longer signs anything.")
    elif action == "test":
        tasks.send_test(current)
        messages.success(request, "A test event is on its way: see it in the deliveries below.")
    elif action == "delete":
        services.remove(request.user)
        messages.success(request, "Your webhook endpoint is deleted: no more webhooks are sent.")
    return redirect("api:token")
