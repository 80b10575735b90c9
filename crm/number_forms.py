"""The form an organization admin adds a WhatsApp number with: a name, a provider, its credentials.

Hosted providers need per-number credentials (README "Providers"); self-hosted Evolution numbers
get theirs from the provider server they are placed on, and the fake needs nothing. The form shows
one group of fields per hosted provider and keeps only the chosen provider's, checked for shape.
"""

import re
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _

from crm.phones import phone_normalize
from providers.registry import ProviderName

META_GRAPH_BASE_URL = "https://graph.facebook.com/v21.0"


@dataclass(frozen=True)
class CredentialField:
    key: str
    label: str
    required: bool = True
    pattern: str = ""  # a regular expression the value must match
    pattern_error: str = ""
    is_secret: bool = False
    is_url: bool = False
    is_phone: bool = False
    default: str = ""
    help_text: str = ""


# The credentials each hosted provider's adapter reads (providers/green_api.py, meta_cloud.py, twilio.py).
HOSTED_CREDENTIALS: dict[str, tuple[CredentialField, ...]] = {
    ProviderName.GREEN_API: (
        CredentialField(
            "id_instance", _("Instance id"), pattern=r"^\d{4,20}$", pattern_error=_("Use the digits of the idInstance.")
        ),
        CredentialField("api_token", _("API token"), is_secret=True),
        CredentialField(
            "api_url", _("API URL"), required=False, is_url=True, help_text=_("Such as https://7105.api.greenapi.com")
        ),
        CredentialField("media_url", _("Media URL"), required=False, is_url=True),
    ),
    ProviderName.META_CLOUD: (
        CredentialField(
            "phone_number_id",
            _("Phone number id"),
            pattern=r"^\d{5,30}$",
            pattern_error=_("Use the Graph id of the phone number (digits)."),
        ),
        CredentialField("access_token", _("Access token"), is_secret=True),
        CredentialField("app_secret", _("App secret"), is_secret=True),
        CredentialField("base_url", _("Graph API URL"), required=False, is_url=True, default=META_GRAPH_BASE_URL),
    ),
    ProviderName.TWILIO: (
        CredentialField(
            "account_sid",
            _("Account SID"),
            pattern=r"^AC[0-9a-fA-F]{32}$",
            pattern_error=_("An account SID is AC followed by 32 hexadecimal characters."),
        ),
        CredentialField("auth_token", _("Auth token"), is_secret=True),
        CredentialField("from_number", _("WhatsApp sender"), is_phone=True, help_text=_("Such as +15550100200")),
    ),
}


def credential_field_name(provider: str, key: str) -> str:
    return f"{provider}__{key}"


class NumberAddForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=120, help_text=_("What agents see, such as 'Sales'."))
    provider = forms.ChoiceField(label=_("Provider"))

    def __init__(self, *args, plan, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = self._provider_choices(plan)
        self.fields["provider"].initial = plan.default_provider
        for provider, credential_fields in HOSTED_CREDENTIALS.items():
            for credential in credential_fields:
                widget = forms.PasswordInput(render_value=True) if credential.is_secret else forms.TextInput()
                widget.attrs.update({"autocomplete": "off", "data-provider": provider})
                self.fields[credential_field_name(provider, credential.key)] = forms.CharField(
                    label=credential.label,
                    required=False,  # required only for the chosen provider: checked in clean()
                    max_length=500,
                    initial=credential.default,
                    help_text=credential.help_text,
                    widget=widget,
                )

    @staticmethod
    def _provider_choices(plan) -> list[tuple[str, str]]:
        # The fake provider is for development; production admins see it only if their plan names it.
        return [
            (value, label)
            for value, label in ProviderName.choices
            if value != ProviderName.FAKE or settings.DEBUG or plan.default_provider == ProviderName.FAKE
        ]

    def credential_groups(self) -> list[tuple[str, str, list]]:
        """Return (provider, its label, its bound fields) for each hosted provider, for the template."""
        labels = dict(ProviderName.choices)
        return [
            (provider, labels[provider], [self[credential_field_name(provider, field.key)] for field in fields])
            for provider, fields in HOSTED_CREDENTIALS.items()
        ]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise ValidationError(_("Give the number a name."))
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        provider = cleaned.get("provider")
        credentials = {}
        for credential in HOSTED_CREDENTIALS.get(provider, ()):
            field_name = credential_field_name(provider, credential.key)
            value = (cleaned.get(field_name) or "").strip() or credential.default
            try:
                value = self._credential_clean(credential, value)
            except ValidationError as error:
                self.add_error(field_name, error)
                continue
            if value:
                credentials[credential.key] = value
        cleaned["credentials"] = credentials
        return cleaned

    @staticmethod
    def _credential_clean(credential: CredentialField, value: str) -> str:
        if not value:
            if credential.required:
                raise ValidationError(_("This provider needs it."))
            return value
        if credential.pattern and not re.fullmatch(credential.pattern, value):
            raise ValidationError(credential.pattern_error)
        if credential.is_url:
            URLValidator(schemes=["https", "http"], message=_("Enter a full URL, such as https://…"))(value)
            return value.rstrip("/")
        if credential.is_phone:
            return phone_normalize(value)
        return value
