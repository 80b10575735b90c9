"""Admin building blocks: the per-organization wall and lists that open fast on big tables.

Superusers see every organization. Any other user who gets into the admin (staff with an admin
membership, see config.admin_site) sees, picks and changes only rows of the organizations they
administer. Org admins hold no Django model permissions, so walled admins grant access from the
membership instead of from `auth` permissions.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.utils.functional import cached_property

from crm.models import Membership, Organization


def organization_ids_administered(request) -> frozenset[int]:
    """Return the ids of the organizations the request's user is an admin of, once per request."""
    cached = getattr(request, "_organization_ids_administered", None)
    if cached is None:
        cached = frozenset(
            Membership.objects.filter(
                user_id=request.user.pk, role=Membership.Role.ADMIN, organization__is_active=True
            ).values_list("organization_id", flat=True)
        )
        request._organization_ids_administered = cached
    return cached


def organization_id_of(obj: Model) -> int | None:
    """Return the organization a row belongs to (an organization belongs to itself)."""
    if isinstance(obj, Organization):
        return obj.pk
    return getattr(obj, "organization_id", None)


def _has_organization_field(model: type[Model]) -> bool:
    try:
        field = model._meta.get_field("organization")
    except FieldDoesNotExist:
        return False
    return field.concrete and field.related_model is Organization


def queryset_walled(queryset: QuerySet, request) -> QuerySet:
    """Return `queryset` narrowed to what the request's user may see; everything for superusers."""
    if request.user.is_superuser:
        return queryset
    organization_ids = organization_ids_administered(request)
    model = queryset.model
    if issubclass(model, Organization):
        return queryset.filter(pk__in=organization_ids)
    if issubclass(model, get_user_model()):
        # Users are global; an org admin may pick only people already in their organizations.
        return queryset.filter(memberships__organization_id__in=organization_ids).distinct()
    if _has_organization_field(model):
        return queryset.filter(organization_id__in=organization_ids)
    # A table no organization owns (plans, provider servers): nothing, unless a superuser.
    return queryset.none()


class OrganizationWalledMixin:
    """Wall a ModelAdmin or an inline into the organizations the user administers."""

    is_organization_walled = True  # read by ConversaAdminSite.register

    def get_queryset(self, request):
        return queryset_walled(super().get_queryset(request), request)

    def has_module_permission(self, request) -> bool:
        if request.user.is_superuser:
            return super().has_module_permission(request)
        return bool(organization_ids_administered(request))

    def has_view_permission(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return super().has_view_permission(request, obj)
        return self._organization_admin_allows(request, obj)

    def has_add_permission(self, request, *args) -> bool:
        # *args: a ModelAdmin is asked (request), an inline (request, parent object or None).
        if request.user.is_superuser:
            return super().has_add_permission(request, *args)
        return self._organization_admin_allows(request, args[0] if args else None)

    def has_change_permission(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return super().has_change_permission(request, obj)
        return self._organization_admin_allows(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return super().has_delete_permission(request, obj)
        return self._organization_admin_allows(request, obj)

    def _organization_admin_allows(self, request, obj) -> bool:
        organization_ids = organization_ids_administered(request)
        return bool(organization_ids) and (obj is None or organization_id_of(obj) in organization_ids)

    def get_readonly_fields(self, request, obj=None):
        readonly_fields = list(super().get_readonly_fields(request, obj))
        # A row never moves to another organization: the rows pointing at it (chats, messages,
        # identities) would be left across the wall, which the composite keys refuse at commit.
        # (An inline's obj is its parent, whose own page already shows the organization.)
        if obj is not None and isinstance(self, admin.ModelAdmin) and _has_organization_field(self.model):
            readonly_fields.append("organization")
        return readonly_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """Offer (and accept) only rows the user may see, so a form cannot link across tenants."""
        if not request.user.is_superuser and "queryset" not in kwargs:
            using = kwargs.get("using")
            queryset = self.get_field_queryset(using, db_field, request)
            if queryset is None:
                queryset = db_field.remote_field.model._default_manager.using(using).all()
            kwargs["queryset"] = queryset_walled(queryset, request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_autocomplete_fields(self, request):
        # The autocomplete view refuses users who cannot view the related admin (an org admin and
        # User); those fields fall back to a select, which formfield_for_foreignkey walls.
        return [name for name in super().get_autocomplete_fields(request) if self._related_viewable(request, name)]

    def _related_viewable(self, request, field_name: str) -> bool:
        related_model = self.model._meta.get_field(field_name).related_model
        related_admin = self.admin_site._registry.get(related_model)
        return related_admin is not None and related_admin.has_view_permission(request)


class OrganizationListFilter(admin.RelatedFieldListFilter):
    """Filter by organization, offering only the organizations the user may see by name."""

    def field_choices(self, field, request, model_admin):
        organizations = queryset_walled(Organization.objects.order_by("name"), request)
        return [(organization.pk, str(organization)) for organization in organizations]


class EstimatedCountPaginator(Paginator):
    """Count an unfiltered big table from PostgreSQL's statistics instead of a COUNT(*) scan.

    COUNT(*) reads every row: seconds on a million messages, on every changelist page. The
    planner's estimate (pg_class.reltuples, refreshed by autovacuum's ANALYZE) is close enough
    for a page count. Filtered lists, small tables and other databases get the exact count.
    """

    estimate_threshold = 10_000

    @cached_property
    def count(self) -> int:
        estimate = self._table_estimate()
        if estimate is not None and estimate > self.estimate_threshold:
            return estimate
        return super().count

    def _table_estimate(self) -> int | None:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or queryset.query.where:
            return None
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        # reltuples is -1 (PostgreSQL 14+) or 0 until the table is first analyzed.
        return int(row[0]) if row else None


class BigTableAdminMixin:
    """Open a changelist of millions of rows without counting them all."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
