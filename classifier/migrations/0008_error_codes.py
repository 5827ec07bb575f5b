"""PetImage.error_code: why an image is not classified, as a code that decides behaviour.

Rows written before the code existed get theirs from the sentences the code wrote then
(classifier/classification.py and ml/services.py up to this migration); this is the last
place that reads those sentences.
"""
from django.db import migrations, models

# (code, how the old sentence began or what it held), first match wins.
OLD_SENTENCES = (
    ("unreadable", "could not be read"),
    ("no_active_model", "No active model"),
    ("too_many_tries", "Classification did not finish after"),
    ("model_unloadable", "cannot be loaded"),
    ("try_failed", "The last try failed with"),
)


def code_of(status: str, message: str) -> str:
    """The code of an old row. A failed row whose sentence is unknown failed as a poison
    image did (the owner was told so before this migration); others with an unknown
    sentence had nothing the owner was told: no code."""
    for code, words in OLD_SENTENCES:
        if words in message:
            return code
    return "too_many_tries" if status == "failed" and message else ""


def fill_codes(apps, schema_editor) -> None:
    PetImage = apps.get_model("classifier", "PetImage")
    for pk, status, message in PetImage.objects.exclude(error_message="").values_list("pk", "status", "error_message"):
        if code := code_of(status, message):
            PetImage.objects.filter(pk=pk).update(error_code=code)


class Migration(migrations.Migration):

    dependencies = [
        ("classifier", "0007_worker_heartbeats"),
    ]

    operations = [
        migrations.AddField(
            model_name="petimage",
            name="error_code",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "None"),
                    ("no_active_model", "No active model"),
                    ("model_unloadable", "The model cannot be loaded"),
                    ("try_failed", "The last try failed"),
                    ("too_many_tries", "Too many tries"),
                    ("unreadable", "The stored file cannot be read"),
                ],
                default="",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="petimage",
            name="error_message",
            field=models.TextField(blank=True, help_text="the error's detail, for staff"),
        ),
        migrations.RunPython(fill_codes, migrations.RunPython.noop),
    ]
