from django.db import migrations

from crm.migration_operations import composite_foreign_key


class Migration(migrations.Migration):
    dependencies = [("crm", "0001_initial")]

    operations = [
        composite_foreign_key(
            table="crm_chat",
            columns=["number_id", "organization_id"],
            target="crm_whatsappnumber",
            target_columns=["id", "organization_id"],
            name="chat_number_same_organization",
        ),
        composite_foreign_key(
            table="crm_chat",
            columns=["contact_id", "organization_id"],
            target="crm_contact",
            target_columns=["id", "organization_id"],
            name="chat_contact_same_organization",
        ),
        composite_foreign_key(
            table="crm_chat",
            columns=["assignee_id", "organization_id"],
            target="crm_membership",
            target_columns=["id", "organization_id"],
            name="chat_assignee_same_organization",
        ),
        composite_foreign_key(
            table="crm_contactidentity",
            columns=["contact_id", "organization_id"],
            target="crm_contact",
            target_columns=["id", "organization_id"],
            name="identity_contact_same_organization",
        ),
    ]
