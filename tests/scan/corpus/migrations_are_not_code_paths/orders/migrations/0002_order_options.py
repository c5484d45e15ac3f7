from django.db import migrations, models


def backfill_status(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    db_alias = schema_editor.connection.alias
    for order in Order.objects.using(db_alias).filter(status=""):
        order.status = "new"
        order.save(update_fields=["status"])
    Order.objects.using(db_alias).filter(total__lt=0).update(total=0)


DEFAULT_OPTIONS = {"OPTIONS": {"pool": {"max_size": 50, "timeout": 60}}, "CONN_MAX_AGE": 600}


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="order",
            name="options",
            field=models.JSONField(default=dict),
        ),
        migrations.RunPython(backfill_status, migrations.RunPython.noop),
    ]
