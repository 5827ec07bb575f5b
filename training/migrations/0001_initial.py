"""Training runs, first made by the app ``classifier`` (its migration 0006).

They moved to their own app: the model is created here in Django's state only (the table
exists), then its table is renamed and its content type (with the permissions to view and
start runs) relabelled. ``classifier`` 0008 removes it from that app's state.
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from petsite.moved_models import move_content_types


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('classifier', '0007_worker_heartbeats'),
        ('registry', '0002_tables_and_permissions_of_registry'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='TrainingRun',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('started_at', models.DateTimeField(blank=True, null=True)),
                    ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                    ('start_from', models.CharField(choices=[('active', 'The active model'), ('imagenet', 'ImageNet weights')], default='active', max_length=10)),
                    ('recipe', models.CharField(default='auto', max_length=10)),
                    ('epochs', models.PositiveSmallIntegerField(blank=True, help_text="empty: the recipe's own", null=True)),
                    ('image_size', models.PositiveSmallIntegerField(default=224)),
                    ('settings', models.JSONField(blank=True, default=dict, help_text='every training argument, as run')),
                    ('state', models.CharField(choices=[('queued', 'Waiting for a training worker'), ('running', 'Training'), ('succeeded', 'Finished'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=10)),
                    ('is_current', models.BooleanField(default=True, editable=False)),
                    ('cancel_requested', models.BooleanField(default=False)),
                    ('progress', models.JSONField(blank=True, default=dict)),
                    ('message', models.TextField(blank=True, help_text='what happened, for staff')),
                    ('num_reviewed_images', models.PositiveIntegerField(default=0)),
                    ('comparison', models.JSONField(blank=True, default=dict)),
                    ('promoted_at', models.DateTimeField(blank=True, null=True)),
                    ('base_version', models.ForeignKey(blank=True, help_text='the active model when the run started', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='registry.modelversion')),
                    ('requested_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('result', models.ForeignKey(blank=True, help_text='the model this run made (the challenger)', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='registry.modelversion')),
                ],
                options={
                    'db_table': 'classifier_trainingrun',
                    'ordering': ['-created_at', '-pk'],
                    'constraints': [models.UniqueConstraint(condition=models.Q(('is_current', True)), fields=('is_current',), name='one_training_run_at_a_time')],
                },
            ),
        ]),
        migrations.AlterModelTable(name='trainingrun', table=None),
        move_content_types('classifier', 'training', ['trainingrun']),
    ]
