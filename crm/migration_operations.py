"""Migration operations Django lacks: composite foreign keys.

They keep rows of one organization from pointing at another organization's rows (a chat on one
organization's number with another's contact, say). Django has no composite foreign keys, so
they are added in SQL on PostgreSQL, where production and the tests run; SQLite (embedded mode)
relies on the models' clean() and the services.
"""

from django.db import migrations


def composite_foreign_key(*, table: str, columns: list[str], target: str, target_columns: list[str], name: str):
    """Return an operation that adds FOREIGN KEY (columns) REFERENCES target (target_columns)."""
    add_sql = (
        f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" FOREIGN KEY ({", ".join(columns)}) '
        f'REFERENCES "{target}" ({", ".join(target_columns)}) DEFERRABLE INITIALLY DEFERRED'
    )
    drop_sql = f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'

    def run(sql):
        def apply(apps, schema_editor):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(sql)

        return apply

    return migrations.RunPython(run(add_sql), run(drop_sql), elidable=False)
