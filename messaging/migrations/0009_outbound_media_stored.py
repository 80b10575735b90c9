# Outbound attachments are in our storage from their upload on: mark the ones accepted before
# message_send said so as stored, so every media URL serves them.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0008_media_pending_index"),
    ]

    operations = [
        migrations.RunSQL(
            "UPDATE messaging_message SET media_state = 'stored' "
            "WHERE direction = 'out' AND media <> '' AND media_state = 'none'",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
