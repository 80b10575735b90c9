"""The Django admin site: platform staff see everything, organization admins only their own.

The wall is deny-by-default: every model admin registered here, including those of third-party
apps (django_celery_beat, auth's Group), is for superusers only unless its class declares itself
organization-walled (`is_organization_walled = True`, see crm.admin_mixins). A model added later
and forgotten therefore stays hidden from organization admins instead of leaking across tenants.
"""

from django.contrib import admin


class SuperuserOnlyAdminMixin:
    """Show and change a model for superusers only: global tables that no organization owns."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args) -> bool:
        # *args: a ModelAdmin is asked (request), an inline (request, obj).
        return request.user.is_superuser and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)


def superuser_only(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """Return `admin_class` restricted to superusers, unchanged when it already is."""
    if issubclass(admin_class, SuperuserOnlyAdminMixin):
        return admin_class
    return type(
        admin_class.__name__,
        (SuperuserOnlyAdminMixin, admin_class),
        {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__},
    )


class ConversaAdminSite(admin.AdminSite):
    site_header = "Conversa administration"
    site_title = "Conversa admin"
    index_title = "Workspace"

    def has_permission(self, request) -> bool:
        """Let in superusers and active staff users who are an admin of at least one organization."""
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return user.is_superuser or user.memberships.filter(role="admin", organization__is_active=True).exists()

    def get_urls(self):
        from django.urls import path

        from crm.playground import playground_view
        from messaging.admin import monitoring_data_view, monitoring_view

        playground = self.admin_view(lambda request: playground_view(request, self))
        monitoring = self.admin_view(lambda request: monitoring_view(request, self))
        return [
            path("provider-test/", playground, name="provider-test"),
            path("monitoring/", monitoring, name="monitoring"),
            path("monitoring/data/", self.admin_view(monitoring_data_view), name="monitoring-data"),
            *super().get_urls(),
        ]

    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        """Register like Django does, but superusers only unless the admin is organization-walled."""
        admin_class = admin_class or admin.ModelAdmin
        if not getattr(admin_class, "is_organization_walled", False):
            admin_class = superuser_only(admin_class)
        super().register(model_or_iterable, admin_class, **options)
