from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("studio", "0005_review_fields"),
    ]
    operations = [
        migrations.AddIndex(
            model_name="attempt",
            index=models.Index(
                fields=[
                    "started_at",
                    "route",
                    "route_owner",
                    "cost_basis",
                    "outcome",
                    "retry_reason",
                    "model_requested",
                    "model_sent",
                    "number",
                    "cost",
                    "latency_ms",
                    "request",
                ],
                name="attempt_audit_idx",
            ),
        ),
    ]
