from django.core.management.base import BaseCommand

from messaging.demo import FakeEvolution, demo_number_connect, demo_workspace_ensure


class Command(BaseCommand):
    help = "Create the demo organization, its admin and agent, a number and a few chats."

    def add_arguments(self, parser):
        parser.add_argument("--evolution-url", default="", help="The fake Evolution API server for the demo number.")
        parser.add_argument("--evolution-api-key", default="", help="The API key that fake server accepts.")

    def handle(self, *args, **options):
        evolution = None
        if options["evolution_url"]:
            evolution = FakeEvolution(url=options["evolution_url"].rstrip("/"), api_key=options["evolution_api_key"])
        workspace = demo_workspace_ensure(evolution=evolution)
        self.stdout.write(f"Demo organization: {workspace.organization.name}")
        for login in (workspace.admin, workspace.agent):
            if login.password:
                self.stdout.write(f"  {login.username} / {login.password}")
            else:
                self.stdout.write(
                    f"  {login.username} (exists; password as printed when it was created, "
                    f"or reset it with: manage.py changepassword {login.username})"
                )
        if evolution:
            number = demo_number_connect(evolution=evolution)
            if number:
                self.stdout.write(f"Demo number {number.phone} connected on the fake Evolution API at {evolution.url}")
