"""``{% webhooks_section %}``: the token page's webhook section (the endpoint, its secret
once, the last deliveries), so the page's own view needs no change."""
from django import template

from .. import services
from ..forms import EndpointForm
from ..views import NEW_SECRET, REFUSED_URL

register = template.Library()


@register.inclusion_tag("webhooks/_section.html", takes_context=True)
def webhooks_section(context) -> dict:
    request = context["request"]
    endpoint = services.endpoint_of(request.user)
    refused = request.session.pop(REFUSED_URL, None)
    form = EndpointForm({"url": refused}, instance=endpoint) if refused is not None else EndpointForm(instance=endpoint)
    if refused is not None:
        form.is_valid()  # shows why it was refused
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "endpoint": endpoint,
        "form": form,
        "new_secret": request.session.pop(NEW_SECRET, None) if endpoint else None,
        "deliveries": services.recent_deliveries(endpoint) if endpoint else [],
    }
