"""Error codes: the code decides what the owner is told; the message is only for staff.

Migration 0008 gives rows written before codes existed the code of their old sentence,
tested on a database with rows (SQLite, and PostgreSQL where DATABASE_URL names one).
"""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from classifier.models import PetImage

BEFORE = [("classifier", "0007_worker_heartbeats")]

# (status, the old error_message as the code of that time wrote it) -> the code it gets.
OLD_ROWS = [
    ("failed", "The stored image could not be read.", "unreadable"),
    ("pending", "No active model. Train one with `python manage.py train --data PATH --activate` or import one "
                "with `python manage.py import_model FILE --activate`.", "no_active_model"),
    ("failed", "Classification did not finish after 3 tries. The last one failed with PoisonError: boom.",
     "too_many_tries"),
    ("failed", "Classification did not finish after 3 tries.", "too_many_tries"),
    ("pending", "The model resnet-1 cannot be loaded: [Errno 2] No such file", "model_unloadable"),
    ("pending", "The last try failed with RuntimeError: out of memory", "try_failed"),
    ("failed", "something nobody wrote any more", "too_many_tries"),  # failed: as the owner was told
    ("pending", "something nobody wrote any more", ""),
    ("done", "", ""),
]


def _migrate(targets=None):
    """Migrate to ``targets`` (default: every app to its latest migration, as the other
    tests expect the database), and return the models of that state."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = targets or executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_old_rows_the_code_of_their_sentence(django_user_model):
    old_apps = _migrate(BEFORE)
    try:
        User = old_apps.get_model("auth", "User")
        OldPetImage = old_apps.get_model("classifier", "PetImage")
        owner = User.objects.create(username="old-owner")
        pks = [
            OldPetImage.objects.create(
                owner=owner, image=f"images/old{n}.jpg", original_name=f"old{n}.jpg", sha256=f"{n:064x}", width=4,
                height=4, uploaded_at=timezone.now(), status=status, error_message=message,
            ).pk
            for n, (status, message, _) in enumerate(OLD_ROWS)
        ]
    finally:
        _migrate()  # 0008 fills the codes; the later migrations leave them as they are
    codes = dict(PetImage.objects.filter(pk__in=pks).values_list("pk", "error_code"))
    assert [codes[pk] for pk in pks] == [code for _, _, code in OLD_ROWS]
    messages = dict(PetImage.objects.filter(pk__in=pks).values_list("pk", "error_message"))
    assert [messages[pk] for pk in pks] == [message for _, message, _ in OLD_ROWS]  # kept, for staff


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "code", "told"), [
    (PetImage.Status.FAILED, PetImage.Error.UNREADABLE, "The file could not be read."),
    (PetImage.Status.FAILED, PetImage.Error.TOO_MANY_TRIES, "a person will look at it"),
    (PetImage.Status.PENDING, PetImage.Error.NO_ACTIVE_MODEL, "as soon as the classifier is set up"),
])
def test_the_owner_is_told_by_the_code_whatever_the_message(make_image, status, code, told):
    # Messages that say the opposite of the code: only the code counts.
    for message in ("", "No active model. The stored image could not be read.", "anything"):
        pet = make_image(status=status, error_code=code, error_message=message)
        assert told in pet.status_message()


@pytest.mark.django_db
def test_a_message_without_its_code_changes_nothing(make_image):
    pet = make_image(status=PetImage.Status.PENDING, error_message="No active model.")
    assert pet.status_message() == ""
    failed = make_image(status=PetImage.Status.FAILED, error_message="could not be read")
    assert "a person will look at it" in failed.status_message()


@pytest.mark.django_db
def test_the_api_shows_the_code(client, user, make_image):
    pet = make_image(status=PetImage.Status.FAILED, error_code=PetImage.Error.UNREADABLE, error_message="for staff")
    client.force_login(user)
    image = client.get(f"/api/images/{pet.pk}/").json()
    assert image["error_code"] == "unreadable"
    assert "for staff" not in str(image)
