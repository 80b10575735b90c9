from django.db import migrations

from crm.migration_operations import composite_foreign_key


class Migration(migrations.Migration):
    dependencies = [("messaging", "0001_initial"), ("crm", "0002_cross_organization_keys")]

    operations = [
        composite_foreign_key(
            table="messaging_message",
            columns=["chat_id", "number_id", "organization_id"],
            target="crm_chat",
            target_columns=["id", "number_id", "organization_id"],
            name="message_on_its_chats_number_and_organization",
        ),
    ]
