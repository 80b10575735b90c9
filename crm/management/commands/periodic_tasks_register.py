from django.core.management.base import BaseCommand

from config.periodic import PERIODIC_TASKS, periodic_tasks_register


class Command(BaseCommand):
    help = (
        "Create the periodic task rows declared in config/periodic.py that the database lacks. "
        "Existing rows are never changed, so edits made in the admin survive; disable a task "
        "rather than delete it, since a deleted row is created again."
    )

    def handle(self, *args, **options):
        created = periodic_tasks_register()
        for name in PERIODIC_TASKS:
            state = "created" if name in created else "exists, left as it is"
            self.stdout.write(f"Periodic task {name}: {state}")
