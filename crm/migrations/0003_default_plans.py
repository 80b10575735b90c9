from django.db import migrations

# The plans a fresh install starts with; admins edit them afterwards.
DEFAULT_PLANS = [
    {
        "code": "free",
        "name": "Free",
        "max_numbers": 1,
        "messages_per_day": 100,
        "api_requests_per_minute": 60,
        "default_provider": "green_api",
    },
    {
        "code": "pro",
        "name": "Pro",
        "max_numbers": 5,
        "messages_per_day": 10_000,
        "api_requests_per_minute": 600,
        "default_provider": "evolution",
    },
    {
        "code": "agency",
        "name": "Agency",
        "max_numbers": 50,
        "messages_per_day": None,
        "api_requests_per_minute": 3_000,
        "default_provider": "evolution",
    },
]


def plans_create(apps, schema_editor):
    plan_model = apps.get_model("crm", "Plan")
    for plan in DEFAULT_PLANS:
        plan_model.objects.get_or_create(code=plan["code"], defaults=plan)


class Migration(migrations.Migration):
    dependencies = [("crm", "0002_cross_organization_keys")]

    operations = [migrations.RunPython(plans_create, migrations.RunPython.noop)]
