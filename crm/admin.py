"""Admin for the CRM: global tables for superusers, each organization's rows walled to its admins.

Foreign keys to tables that grow with customers (users, organizations, numbers, contacts, chats,
memberships) use autocomplete: a <select> of every row would render them all on each form.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import models
from django.db.models import Count
from django.utils import timezone

from config.admin_site import SuperuserOnlyAdminMixin
from crm.admin_mixins import BigTableAdminMixin, OrganizationListFilter, OrganizationWalledMixin
from crm.models import (
    ApiKey,
    Chat,
    Contact,
    ContactIdentity,
    HealthCheck,
    Membership,
    Organization,
    Plan,
    ProviderServer,
    QuickReply,
    WhatsAppNumber,
)
from crm.services import (
    api_key_create,
    api_key_revoke,
    api_keys_changed,
    number_changed,
    plan_changed,
    provider_servers_drain,
)


@admin.register(Plan)
class PlanAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "max_numbers",
        "messages_per_day",
        "api_requests_per_minute",
        "default_provider",
    ]
    list_filter = ["default_provider"]
    search_fields = ["code", "name"]

    # Plan limits are cached (crm.cache); every write through the admin makes the cache old.
    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        plan_changed(plan_id=obj.pk)

    def delete_model(self, request, obj) -> None:
        plan_changed(plan_id=obj.pk)
        super().delete_model(request, obj)


class MembershipOfOrganizationInline(OrganizationWalledMixin, admin.TabularInline):
    model = Membership
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user"]
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(OrganizationWalledMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "plan", "is_active", "created_at"]
    list_filter = ["is_active", "plan"]
    search_fields = ["name", "slug"]
    list_select_related = ["plan"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]
    inlines = [MembershipOfOrganizationInline]

    def get_readonly_fields(self, request, obj=None):
        readonly_fields = super().get_readonly_fields(request, obj)
        if request.user.is_superuser:
            return readonly_fields
        # The slug, plan and suspension are the platform's business, not the customer's.
        return [*readonly_fields, "slug", "plan", "is_active"]

    def get_prepopulated_fields(self, request, obj=None):
        return self.prepopulated_fields if request.user.is_superuser else {}

    # A suspended organization's keys stop at once; cached keys carry the organization's state.
    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        api_keys_changed()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        api_keys_changed()

    def has_add_permission(self, request) -> bool:
        # An organization is a customer account: platform staff open and close them.
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)


@admin.register(Membership)
class MembershipAdmin(OrganizationWalledMixin, admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", ("organization", OrganizationListFilter)]
    search_fields = ["user__username", "user__email", "organization__name"]
    list_select_related = ["user", "organization"]
    autocomplete_fields = ["organization", "user"]
    readonly_fields = ["created_at"]


@admin.register(ProviderServer)
class ProviderServerAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    # api_key is deliberately not listed: list pages get screen-shared and cached.
    list_display = [
        "name",
        "provider",
        "base_url",
        "capacity",
        "number_count",
        "is_healthy",
        "is_draining",
        "last_checked_at",
        "last_latency_ms",
    ]
    list_filter = ["provider", "is_healthy", "is_draining"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["last_checked_at", "last_latency_ms", "last_error"]
    # A base URL typed without a scheme is taken as https, Django 6's default (and its warning's fix).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(number_count=Count("numbers"))

    @admin.display(description="numbers", ordering="number_count")
    def number_count(self, server: ProviderServer) -> int:
        return server.number_count

    actions = ["drain", "undrain"]

    @admin.action(description="Drain selected servers (no new numbers; existing ones stay)")
    def drain(self, request, queryset) -> None:
        changed = provider_servers_drain(servers=queryset)
        self.message_user(request, f"{changed} server(s) drained: they get no new numbers.")

    @admin.action(description="Undrain selected servers")
    def undrain(self, request, queryset) -> None:
        changed = provider_servers_drain(servers=queryset, is_draining=False)
        self.message_user(request, f"{changed} server(s) take new numbers again.")


@admin.register(WhatsAppNumber)
class WhatsAppNumberAdmin(OrganizationWalledMixin, admin.ModelAdmin):
    # webhook_secret and credentials are deliberately not listed (see ProviderServerAdmin).
    list_display = [
        "name",
        "phone",
        "organization",
        "provider",
        "state",
        "silence",
        "server",
        "last_seen_at",
        "archived_at",
        "created_at",
    ]
    list_filter = [
        ("organization", OrganizationListFilter),
        "provider",
        "state",
        ("silent_since", admin.EmptyFieldListFilter),
        ("archived_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["name", "phone", "instance_name"]
    list_select_related = ["organization", "server"]
    autocomplete_fields = ["organization"]
    # The health beat and the cleanup beat own these (messaging.services.health and .cleanup).
    readonly_fields = ["last_seen_at", "created_at", "silence_restarted_at", "silent_since", "archived_at"]

    @admin.display(description="silence", ordering="silent_since")
    def silence(self, number: WhatsAppNumber) -> str:
        if number.silent_since:
            return f"⚠ Silent since {timezone.localtime(number.silent_since):%Y-%m-%d %H:%M}: reconnect it"
        if number.silence_restarted_at:
            return f"Restarted for silence at {timezone.localtime(number.silence_restarted_at):%Y-%m-%d %H:%M}"
        return ""

    def get_readonly_fields(self, request, obj=None):
        readonly_fields = super().get_readonly_fields(request, obj)
        if request.user.is_superuser:
            return readonly_fields
        # Which server hosts a number is platform capacity planning; customers don't pick it.
        return [*readonly_fields, "server"]

    # The numbers list is cached per organization (crm.cache): every admin write makes it old.
    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        number_changed(organization_id=obj.organization_id)

    def delete_model(self, request, obj) -> None:
        number_changed(organization_id=obj.organization_id)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for organization_id in set(queryset.values_list("organization_id", flat=True)):
            number_changed(organization_id=organization_id)
        super().delete_queryset(request, queryset)


@admin.register(HealthCheck)
class HealthCheckAdmin(BigTableAdminMixin, OrganizationWalledMixin, admin.ModelAdmin):
    """Health beat results, read-only; an organization admin sees their numbers' checks only."""

    list_display = ["checked_at", "provider", "server", "number", "organization", "is_healthy", "latency_ms", "error"]
    list_filter = ["is_healthy", "provider", ("organization", OrganizationListFilter)]
    list_select_related = ["server", "number", "organization"]
    ordering = ["-id"]

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ContactIdentityInlineForm(forms.ModelForm):
    """An identity of the contact on the page: it takes the contact's organization."""

    class Meta:
        model = ContactIdentity
        fields = ["kind", "value"]

    def clean(self):
        # The contact form is validated before its inlines, so even a new contact (not saved yet,
        # hence only reachable through the inline's parent field) has its organization by now.
        contact = self.fields["contact"].parent_instance
        self.instance.organization_id = contact.organization_id
        return super().clean()

    def _get_validation_exclusions(self):
        # organization is not a form field, and Django skips constraints naming excluded fields;
        # keep it, so a duplicate (organization, kind, value) is a form error, not an IntegrityError.
        exclusions = super()._get_validation_exclusions()
        exclusions.discard("organization")
        return exclusions


class ContactIdentityInline(OrganizationWalledMixin, admin.TabularInline):
    model = ContactIdentity
    form = ContactIdentityInlineForm
    fields = ["kind", "value"]
    extra = 0


@admin.register(Contact)
class ContactAdmin(BigTableAdminMixin, OrganizationWalledMixin, admin.ModelAdmin):
    list_display = ["__str__", "phone", "organization", "created_at"]
    list_filter = [("organization", OrganizationListFilter)]
    search_fields = ["name", "phone"]
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]
    readonly_fields = ["created_at"]
    ordering = ["-id"]
    inlines = [ContactIdentityInline]


@admin.register(QuickReply)
class QuickReplyAdmin(OrganizationWalledMixin, admin.ModelAdmin):
    list_display = ["__str__", "organization", "created_at"]
    list_filter = [("organization", OrganizationListFilter)]
    search_fields = ["shortcut", "text"]
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]
    readonly_fields = ["created_at"]


@admin.register(ContactIdentity)
class ContactIdentityAdmin(BigTableAdminMixin, OrganizationWalledMixin, admin.ModelAdmin):
    list_display = ["value", "kind", "contact", "organization"]
    list_filter = ["kind", ("organization", OrganizationListFilter)]
    search_fields = ["^value"]
    list_select_related = ["contact", "organization"]
    autocomplete_fields = ["organization", "contact"]
    ordering = ["-id"]


@admin.register(Chat)
class ChatAdmin(BigTableAdminMixin, OrganizationWalledMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "contact",
        "number",
        "organization",
        "status",
        "assignee",
        "unread_count",
        "last_message_at",
    ]
    list_display_links = ["id", "contact"]
    list_filter = [("organization", OrganizationListFilter), "status"]
    search_fields = ["contact__name", "contact__phone"]
    list_select_related = ["contact", "number", "organization", "assignee__user", "assignee__organization"]
    autocomplete_fields = ["organization", "number", "contact", "assignee"]
    readonly_fields = ["created_at", "updated_at"]
    # Newest first by primary key: an index walk. Ordering by last activity would sort the whole
    # table on every page; the column headers still sort by it on demand.
    ordering = ["-id"]
    actions = ["chats_resolve", "chats_reopen"]

    def get_readonly_fields(self, request, obj=None):
        readonly_fields = super().get_readonly_fields(request, obj)
        # A chat's messages are keyed to its number (composite key), so the number is fixed.
        return readonly_fields if obj is None else [*readonly_fields, "number"]

    @admin.action(description="Resolve selected chats", permissions=["change"])
    def chats_resolve(self, request, queryset) -> None:
        self._chats_status_set(request, queryset, Chat.Status.RESOLVED)

    @admin.action(description="Reopen selected chats", permissions=["change"])
    def chats_reopen(self, request, queryset) -> None:
        self._chats_status_set(request, queryset, Chat.Status.OPEN)

    def _chats_status_set(self, request, queryset, status: str) -> None:
        # queryset comes from get_queryset, so an org admin can only touch their own chats.
        changed = queryset.update(status=status, updated_at=timezone.now())
        self.message_user(request, f"{changed} chat(s) marked {Chat.Status(status).label.lower()}.")


class MembershipOfUserInline(admin.TabularInline):
    model = Membership
    fields = ["organization", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["organization"]
    extra = 0


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(SuperuserOnlyAdminMixin, DjangoUserAdmin):
    inlines = [*DjangoUserAdmin.inlines, MembershipOfUserInline]


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["organization", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(OrganizationWalledMixin, admin.ModelAdmin):
    """API keys: created here or on the site, shown once; only their hash and prefix are stored."""

    list_display = [
        "name",
        "prefix",
        "organization",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = [("organization", OrganizationListFilter)]
    search_fields = ["name", "prefix"]
    list_select_related = ["organization", "created_by"]
    autocomplete_fields = ["organization"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ["organization", "name"] if obj is None else self.list_display

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return  # nothing of a key changes by hand; revoke it instead
        created, secret = api_key_create(
            organization=form.cleaned_data["organization"], name=form.cleaned_data["name"], created_by=request.user
        )
        obj.pk = created.pk
        self.message_user(request, f"The new API key (shown only now, copy it): {secret}", messages.WARNING)

    @admin.action(description="Revoke selected API keys (they stop working at once)")
    def revoke(self, request, queryset) -> None:
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
        self.message_user(request, "Revoked.", messages.SUCCESS)

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        api_keys_changed()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        api_keys_changed()
