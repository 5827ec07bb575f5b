from django.core.management.base import BaseCommand

from classifier import tasks


class Command(BaseCommand):
    help = (
        "Send unfinished images to the workers again: those that waited longer than the re-queue "
        "settings allow (what the beat task does), or with --all every pending one now."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="send every pending image now, whatever its age")

    def handle(self, all, **options):
        count = tasks.send_pending_now() if all else tasks.requeue_stale()
        self.stdout.write(self.style.SUCCESS(f"Re-sent {count} image(s) to the workers."))
