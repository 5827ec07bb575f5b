"""The API's lists, a page at a time: ``?page=N`` and ``?page_size=M``, with a ``Link``
header (RFC 8288: ``first``, ``prev``, ``next``, ``last``) besides the body's ``count``,
``next`` and ``previous``.

Page numbers rather than cursors: the gallery sorts newest or oldest first, and most or
least confident first (``classifier.filters.SORTS``), and a page number works the same
for every order, gives ``count`` and a ``last`` page, and is what the site's gallery
pages by. A cursor needs a unique, stable key in each order (confidence is neither:
ties, and a result that arrives moves the photo) and saves a ``COUNT`` that the lists'
sizes (one user's photos) make cheap. A photo uploaded while a
client pages may shift a newest-first list by one; the ETag of each page says so.

Rules: ``page`` is a positive integer (or ``last``), ``page_size`` an integer from 1 to
``MAX_PAGE_SIZE`` (the gallery's size when absent); anything else is a 400, a page past
the last a 404. Links name the v1 address whichever address was asked.
"""
from __future__ import annotations

from django.urls import reverse
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

MAX_PAGE_SIZE = 100
MAX_PAGE_NUMBER = 999_999_999  # nine digits: no page number past this is read


class LinkedPageNumberPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    page_size_query_description = f"Results per page, 1 to {MAX_PAGE_SIZE} (the gallery's page size when absent)."
    page_query_description = "A page number, from 1 (or `last`)."

    def paginate_queryset(self, queryset, request: Request, view=None):
        number = request.query_params.get(self.page_query_param)
        if number is not None and number not in self.last_page_strings and not _positive_integer(number):
            raise exceptions.ValidationError({self.page_query_param: ["Give a page number from 1 (or `last`)."]})
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound:  # past the last page: say which is the last
            last = self.django_paginator_class(queryset, self.get_page_size(request)).num_pages
            raise exceptions.NotFound(
                {self.page_query_param: [exceptions.ErrorDetail(f"There is no page {number}: the last is {last}.",
                                                                "not_found")]}
            ) from None

    def get_page_size(self, request: Request) -> int:
        size = request.query_params.get(self.page_size_query_param)
        if size is None:
            return self.page_size
        if not _positive_integer(size) or int(size) > self.max_page_size:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [f"Give a page size from 1 to {self.max_page_size}."]}
            )
        return int(size)

    def get_paginated_response(self, data) -> Response:
        response = super().get_paginated_response(data)
        response["Link"] = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in self.links().items())
        return response

    def links(self) -> dict[str, str]:
        """The pages around this one, by relation: ``first`` and ``last`` always, ``prev``
        and ``next`` where there are such pages."""
        page = self.page
        links = {"first": self._url(1)}
        if page.has_previous():
            links["prev"] = self._url(page.previous_page_number())
        if page.has_next():
            links["next"] = self._url(page.next_page_number())
        links["last"] = self._url(page.paginator.num_pages)
        return links

    def get_next_link(self) -> str | None:
        return self._url(self.page.next_page_number()) if self.page.has_next() else None

    def get_previous_link(self) -> str | None:
        return self._url(self.page.previous_page_number()) if self.page.has_previous() else None

    def _url(self, number: int) -> str:
        """This list's v1 URL, with the request's query (filters, sort, page size) and page ``number``."""
        url = canonical_url(self.request)
        if number == 1:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, number)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size, default=self.page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"].update(minimum=1)
        return parameters


def canonical_url(request: Request) -> str:
    """The absolute v1 URL of the endpoint asked, with the request's query: the alias
    ``/api/images/`` answers with ``/api/v1/images/`` links."""
    match = request.resolver_match
    path = reverse(f"api:{match.url_name}", kwargs=match.captured_kwargs)
    query = request.META.get("QUERY_STRING", "")
    return request.build_absolute_uri(f"{path}?{query}" if query else path)


def _positive_integer(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 9 and 1 <= int(value) <= MAX_PAGE_NUMBER
