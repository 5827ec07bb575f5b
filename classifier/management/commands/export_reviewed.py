from django.core.management.base import BaseCommand

from classifier import exports
from classifier.management.arguments import since
from ml.breeds import display_name


class Command(BaseCommand):
    help = "Write reviewed images in the Oxford-IIIT Pet layout, for `train --extra-data DIR`."

    def add_arguments(self, parser):
        parser.add_argument("dir", help="output folder (the dataset goes into DIR/oxford-iiit-pet/)")
        parser.add_argument("--since", type=since, help="only images reviewed since this date")

    def handle(self, dir, since, **options):
        counts = exports.export_reviewed(dir, since=since)
        for breed, count in sorted(counts.items(), key=lambda item: display_name(item[0])):
            self.stdout.write(f"  {display_name(breed):<28} {count:5d}")
        total = sum(counts.values())
        self.stdout.write(self.style.SUCCESS(f"Exported {total} reviewed image(s) of {len(counts)} breed(s) to {dir}."))
        if total:
            self.stdout.write(
                f"Fine-tune with: python manage.py train --data DATA --init-from MODEL --extra-data {dir}"
            )
