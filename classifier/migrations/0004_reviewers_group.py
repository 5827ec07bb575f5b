"""The "Reviewers" group: what a reviewer needs, and nothing more.

A reviewer works through the review queue in the admin (view and change pet images,
the review actions, the prediction history), opens the review dashboard and the model
pages, and may fetch any photo for that. Making someone a reviewer is then: staff status
(for the admin) and membership of this group.
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEWERS = "Reviewers"
PERMISSIONS = [
    ("classifier", "petimage", "view_petimage"),
    ("classifier", "petimage", "change_petimage"),
    ("classifier", "petimage", "review_petimage"),
    ("classifier", "classification", "view_classification"),
    ("registry", "modelversion", "view_modelversion"),
]


def create_reviewers(apps, schema_editor):
    # Permissions are normally created after `migrate` finishes (post_migrate): on a fresh
    # database they do not exist yet, so create them now, as Django's documentation shows.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=REVIEWERS)
    for app_label, model, codename in PERMISSIONS:
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, content_type__model=model, codename=codename)
        )


def remove_reviewers(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=REVIEWERS).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("classifier", "0003_claims_and_history"),
        ("registry", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewers, remove_reviewers)]
