import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from classifier import tasks
from classifier.management.arguments import since
from classifier.models import PetImage
from petsite.health import check_broker
from registry import services as registry_services
from registry.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Classify existing images again, in chunks through the Celery queue, with the active "
        "(or a named) model. Earlier predictions stay in the history."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("--status", action="append", choices=PetImage.Status.values,
                            help="only images with this status (repeatable; default: all)")
        parser.add_argument("--since", type=since, help="only images uploaded since this date")
        parser.add_argument("--chunk-size", type=int, default=32, help="images per task (default 32)")
        parser.add_argument("--wait", action="store_true", help="show progress until the workers are done")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits at most")

    def handle(self, model, status, since, chunk_size, wait, timeout, **options):
        try:
            version = ModelVersion.objects.get(name=model) if model else registry_services.require_active_version()
        except ModelVersion.DoesNotExist:
            raise CommandError(f"No model version named {model!r}.") from None
        except registry_services.NoActiveModel as exc:
            raise CommandError(str(exc)) from None
        try:  # finished images are never re-sent by the beat: a message lost here would be lost for good
            check_broker()
        except Exception as exc:  # kombu raises several types when the broker is unreachable
            raise CommandError(
                f"The workers' broker does not answer ({type(exc).__name__}), so nothing was sent. Start it "
                "(bin/run starts the embedded one) or check CELERY_BROKER_URL, then run this again."
            ) from None
        images = PetImage.objects.exclude(status=PetImage.Status.DONE, model_version=version)
        if status:
            images = images.filter(status__in=status)
        if since:
            images = images.filter(uploaded_at__gte=since)
        chunks = tasks.reclassify(images, version, chunk_size=chunk_size)
        pks = [pk for chunk in chunks for pk in chunk]
        self.stdout.write(f"Sent {len(pks)} image(s) in {len(chunks)} chunk(s) to be classified by {version.name}.")
        if wait and pks:
            self._wait(pks, version, timeout)

    def _wait(self, pks, version, timeout):
        finished = PetImage.objects.filter(pk__in=pks).exclude(
            status__in=[PetImage.Status.PENDING, PetImage.Status.PROCESSING]
        )
        done_by_version = finished.filter(status=PetImage.Status.DONE, model_version=version)
        deadline = time.monotonic() + timeout
        with tqdm(total=len(pks), unit="image", desc="reclassify") as bar:
            while True:
                count = done_by_version.count() + finished.filter(status=PetImage.Status.FAILED).count()
                bar.update(count - bar.n)
                if count >= len(pks) or time.monotonic() > deadline:
                    break
                time.sleep(1)
        if count < len(pks):
            raise CommandError(f"Timed out: {count} of {len(pks)} images done; the rest are still queued.")
        self.stdout.write(self.style.SUCCESS(f"All {len(pks)} image(s) classified by {version.name}."))
