from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True)),
                ("number", models.CharField(max_length=32, unique=True)),
                ("status", models.CharField(default="new", max_length=16)),
                ("total", models.DecimalField(decimal_places=2, max_digits=10)),
            ],
            options={"ordering": ["-created"]},
        ),
    ]
