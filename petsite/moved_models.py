"""Moving a model from one app to another without losing rows or permissions.

A moved model keeps its table (renamed by ``AlterModelTable``) and its rows; what Django
does not move by itself is its content type, and with it every permission that a user or
a group was granted on the model. :func:`move_content_types` is the migration step that
relabels them, so that ``reviewers`` still may view model versions after ``ml.ModelVersion``
became ``registry.ModelVersion``.
"""
from django.db import migrations


def move_content_types(old_app: str, new_app: str, models: list[str]) -> migrations.RunPython:
    """A reversible migration step that gives ``models``' content types to ``new_app``."""

    def relabel(apps, schema_editor, source: str, target: str) -> None:
        content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
        for model in models:
            old = content_types.filter(app_label=source, model=model).first()
            if old is None:  # a new database: post_migrate creates the target's content type
                continue
            # One made for the target app already (a migrate run that stopped half way) holds
            # no grant worth keeping over the old one's: the old one wins.
            content_types.filter(app_label=target, model=model).delete()
            old.app_label = target
            old.save(update_fields=["app_label"])

    return migrations.RunPython(
        lambda apps, schema_editor: relabel(apps, schema_editor, old_app, new_app),
        lambda apps, schema_editor: relabel(apps, schema_editor, new_app, old_app),
    )
