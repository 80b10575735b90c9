"""The Django admin site: platform staff see everything, organization admins only their own."""

from django.contrib import admin


class ConversaAdminSite(admin.AdminSite):
    site_header = "Conversa administration"
    site_title = "Conversa admin"
    index_title = "Workspace"

    def has_permission(self, request) -> bool:
        """Let in superusers and active staff users who are an admin of at least one organization."""
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return user.is_superuser or user.memberships.filter(role="admin").exists()
