"""A database as the code before the move left it, migrated by today's code: run in a
process of its own (``python -m tests.old_database``) on the empty database that
``DATABASE_URL`` names, it prints what survived as JSON (tests/test_moved_models.py).

Before the move, model versions lived in the app ``ml`` (tables ``ml_*``, migrations
``ml.0001`` and ``ml.0002``) and training runs in ``classifier`` (``classifier_trainingrun``).
That schema is today's migrations up to ``registry.0001`` (whose tables keep the ``ml_*``
names) and ``classifier.0007``; the history and content types are then relabelled as the
old code wrote them, rows are added with the models of that moment, and ``migrate`` runs.
"""
import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from django.contrib.auth.models import Group, Permission, User  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.utils import timezone  # noqa: E402

OLD_STATE = [("registry", "0001_initial"), ("classifier", "0007_worker_heartbeats")]
OLD_LABELS = {("registry", "modelversion"): "ml", ("registry", "modelwarmup"): "ml",
              ("training", "trainingrun"): "classifier"}


def make_old_database() -> None:
    for app, migration in OLD_STATE:
        call_command("migrate", app, migration, verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'registry'")
        for name in ("0001_initial", "0002_model_warmups"):
            cursor.execute("INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
                           ["ml", name, timezone.now()])
    for (app, model), old_app in OLD_LABELS.items():
        ContentType.objects.filter(app_label=app, model=model).update(app_label=old_app)
    old = MigrationExecutor(connection).loader.project_state(OLD_STATE).apps
    version = old.get_model("registry", "ModelVersion").objects.create(name="old-v1", file="models/old.pt",
                                                                        is_active=True)
    old.get_model("registry", "ModelWarmup").objects.create(version=version, host="worker-1", state="ready")
    owner = old.get_model("auth", "User").objects.create(username="owner")
    old.get_model("classifier", "PetImage").objects.create(
        owner_id=owner.pk, image="pets/old.jpg", width=640, height=480, status="done", predicted_breed="pug",
        model_version=version)
    old.get_model("classifier", "TrainingRun").objects.create(base_version=version, result=version, state="succeeded",
                                                              is_current=False)
    trainer = User.objects.create(username="trainer")
    start_runs = Permission.objects.get(content_type__app_label="classifier", codename="add_trainingrun")
    trainer.user_permissions.add(start_runs)
    User.objects.create(username="reviewer").groups.add(Group.objects.get(name="Reviewers"))


def migrate_and_report() -> dict:
    call_command("migrate", verbosity=0)
    from classifier.models import PetImage
    from registry.models import ModelVersion, ModelWarmup
    from training.models import TrainingRun

    version = ModelVersion.objects.get(name="old-v1")
    tables = set(connection.introspection.table_names())
    return {
        "active": version.is_active,
        "warmups": list(ModelWarmup.objects.filter(version=version).values_list("host", flat=True)),
        "photo_model": PetImage.objects.get(image="pets/old.jpg").model_version.name,
        "run_result": TrainingRun.objects.get().result.name,
        "reviewer_may_view_models": User.objects.get(username="reviewer").has_perm("registry.view_modelversion"),
        "trainer_may_start_runs": User.objects.get(username="trainer").has_perm("training.add_trainingrun"),
        "old_content_types": ContentType.objects.filter(app_label="ml").count()
        + ContentType.objects.filter(app_label="classifier", model="trainingrun").count(),
        "old_tables": sorted(t for t in tables if t.startswith("ml_") or t == "classifier_trainingrun"),
        "new_tables": sorted(t for t in tables if t in {"registry_modelversion", "registry_modelwarmup",
                                                         "training_trainingrun"}),
        # New rows after the rename: the id sequences came along with the tables.
        "new_version_id_above_old": ModelVersion.objects.create(name="new-v2", file="models/new.pt").pk > version.pk,
        "new_run_id_above_old": TrainingRun.objects.create().pk > TrainingRun.objects.get(result=version).pk,
    }


if __name__ == "__main__":
    make_old_database()
    print(json.dumps(migrate_and_report()))
