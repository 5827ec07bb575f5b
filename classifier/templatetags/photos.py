"""Template filters for photos: ``{% load photos %}``."""
from django import template

from classifier.models import PetImage
from classifier.review import owner_answer_words
from classifier.uploads import short_name as shorten_name

register = template.Library()


@register.filter
def short_name(name: str) -> str:
    """A file name as pages show it (``classifier.uploads.short_name``): "aaaa…aaa.jpg"."""
    return shorten_name(name or "")


@register.filter
def owner_answer(pet: PetImage) -> str:
    """What the owner answered, in their words (``classifier.review.owner_answer_words``)."""
    return owner_answer_words(pet)
