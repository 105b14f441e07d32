"""The gallery's prompt search (GenerationRequestQuerySet.matching) reads a trigram index on
PostgreSQL, so `UPPER(prompt) LIKE UPPER('%text%')` (Django's icontains) is answered from an
index at millions of requests. SQLite (the no-settings default) has no such index and scans;
nothing else differs."""

from django.db import migrations

INDEX = "request_prompt_trgm_idx"


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON studio_generationrequest "
        "USING gin (upper(prompt) gin_trgm_ops)"
    )


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("studio", "0010_billing_states")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
