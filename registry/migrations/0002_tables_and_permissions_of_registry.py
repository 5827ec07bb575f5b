"""The tables and content types of model versions, moved from the app ``ml`` to ``registry``
(see 0001): rows, foreign keys from photos and training runs, and permissions all kept."""
from django.db import migrations

from petsite.moved_models import move_content_types


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelTable(name="modelversion", table=None),
        migrations.AlterModelTable(name="modelwarmup", table=None),
        move_content_types("ml", "registry", ["modelversion", "modelwarmup"]),
    ]
