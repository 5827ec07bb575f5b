"""Model versions and their warm-ups, first made by the app ``ml`` (its migrations 0001 and 0002).

The Django side of the model moved from ``ml`` to ``registry`` (``ml`` is now the model core,
with no Django). On a database made before the move, ``replaces`` marks this migration as
applied (the tables exist, named ``ml_*``); on a new one it creates them under those same
names. Either way, 0002 then renames the tables and moves the content types (and with them
every permission granted) to ``registry``.
"""
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True
    replaces = [("ml", "0001_initial"), ("ml", "0002_model_warmups")]
    dependencies = []

    operations = [
        migrations.CreateModel(
            name='ModelVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.SlugField(max_length=100, unique=True)),
                ('file', models.FileField(max_length=255, upload_to='models/')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('classes', models.JSONField(default=list)),
                ('image_size', models.PositiveIntegerField(default=224)),
                ('metrics', models.JSONField(blank=True, default=dict)),
                ('training_args', models.JSONField(blank=True, default=dict)),
                ('history', models.JSONField(blank=True, default=dict)),
                ('figures', models.JSONField(blank=True, default=dict, help_text='figure name -> storage path')),
                ('is_active', models.BooleanField(default=False)),
                ('notes', models.TextField(blank=True)),
            ],
            options={
                'db_table': 'ml_modelversion',
                'ordering': ['-created_at'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('is_active', True)), fields=('is_active',), name='one_active_model_version')],
            },
        ),
        migrations.CreateModel(
            name='ModelWarmup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('host', models.CharField(help_text='the worker machine', max_length=255)),
                ('state', models.CharField(choices=[('running', 'Getting ready'), ('ready', 'Ready'), ('failed', 'Failed')], default='running', max_length=10)),
                ('backend', models.CharField(blank=True, help_text='the backend its workers run (when ready)', max_length=20)),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('report', models.JSONField(blank=True, default=dict, help_text="ml.warmup's result: timings, export, reasons")),
                ('version', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='warmups', to='registry.modelversion')),
            ],
            options={
                'db_table': 'ml_modelwarmup',
                'ordering': ['host'],
                'constraints': [models.UniqueConstraint(fields=('version', 'host'), name='one_warmup_per_version_and_host')],
            },
        ),
    ]
