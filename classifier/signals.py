"""Signals of the classifier's services, for apps that act on them without being imported here.

``image_finished`` is sent by ``classification._finish``, the one place where an image
becomes done or failed, inside the transaction that writes it: a receiver that writes rows
(webhook deliveries) writes them in that same transaction, and one that tells the outside
world (a wake-up of waiting API requests, a queue message) must do it in
``transaction.on_commit``, since a reader only sees the finished row after the commit.
"""
from django.dispatch import Signal

# sender: PetImage; pk: the image's id; status: "done" or "failed".
image_finished = Signal()
