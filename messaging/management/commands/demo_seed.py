from django.core.management.base import BaseCommand

from messaging.demo import demo_workspace_ensure


class Command(BaseCommand):
    help = "Create the demo organization, its admin and agent, a fake-provider number and a few chats."

    def handle(self, *args, **options):
        workspace = demo_workspace_ensure()
        self.stdout.write(f"Demo organization: {workspace.organization.name}")
        for login in (workspace.admin, workspace.agent):
            if login.password:
                self.stdout.write(f"  {login.username} / {login.password}")
            else:
                self.stdout.write(
                    f"  {login.username} (exists; password as printed when it was created, "
                    f"or reset it with: manage.py changepassword {login.username})"
                )
