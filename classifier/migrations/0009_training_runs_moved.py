"""Training runs moved to the app ``training`` (its migration 0001 keeps the table and rows):
only Django's state of this app changes."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0008_error_codes'),
        ('training', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name='TrainingRun')]),
    ]
