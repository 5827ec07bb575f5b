from datetime import timedelta

from django.core.management.base import BaseCommand

from classifier import classification


class Command(BaseCommand):
    help = "Send images that have waited too long (pending, or stuck in processing) to the workers again."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=5, metavar="MINUTES",
                            help="only images uploaded more than this many minutes ago (default 5; 0 for all)")

    def handle(self, older_than, **options):
        count = classification.requeue_stale(timedelta(minutes=older_than))
        self.stdout.write(self.style.SUCCESS(f"Re-sent {count} image(s) to the workers."))
