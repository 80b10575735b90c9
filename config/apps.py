from django.contrib.admin.apps import AdminConfig


class ConversaAdminConfig(AdminConfig):
    """Django admin with Conversa's site, which walls each organization's admins into their data."""

    default_site = "config.admin_site.ConversaAdminSite"
