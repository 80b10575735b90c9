"""The provider playground (/admin/provider-test/): send one test message through a number's
provider and see the raw HTTP request and response.

It calls the adapter directly, in the request, on purpose: it is a diagnostic tool for admins
checking a provider's credentials and contract, and the raw exchange is the point. Messages
agents send never take this path (they go through the outbox).
"""

from dataclasses import dataclass

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse

from crm.admin_mixins import organization_ids_administered
from crm.models import WhatsAppNumber
from crm.phones import phone_normalize
from crm.selectors import number_provider_target
from providers.base import ProviderError, ProviderTarget, SendResult
from providers.exchanges import Exchange, exchanges_recorded
from providers.registry import adapter_for


class PlaygroundForm(forms.Form):
    number = forms.ModelChoiceField(queryset=WhatsAppNumber.objects.none())
    recipient = forms.CharField(max_length=32, help_text="International format, such as +5511912345678.")
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4096)

    def __init__(self, *args, numbers, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["number"].queryset = numbers

    def clean_recipient(self) -> str:
        try:
            return phone_normalize(self.cleaned_data["recipient"])
        except ValidationError as error:
            raise forms.ValidationError(error.messages) from error


@dataclass(frozen=True)
class PlaygroundOutcome:
    result: SendResult | None
    error: ProviderError | None
    exchanges: list[Exchange]


def numbers_visible(request):
    numbers = WhatsAppNumber.objects.select_related("organization", "server").order_by("organization__name", "name")
    if request.user.is_superuser:
        return numbers
    return numbers.filter(organization_id__in=organization_ids_administered(request))


def playground_send(*, number: WhatsAppNumber, recipient: str, text: str) -> PlaygroundOutcome:
    """Send `text` to `recipient` through the number's provider; return what happened on the wire."""
    target = number_provider_target(number)
    with exchanges_recorded(secrets=_target_secrets(target)) as exchanges:
        try:
            result = adapter_for(number.provider).send_text(target, to=recipient, text=text)
        except ProviderError as error:
            return PlaygroundOutcome(result=None, error=error, exchanges=exchanges)
    return PlaygroundOutcome(result=result, error=None, exchanges=exchanges)


def _target_secrets(target: ProviderTarget) -> list[str]:
    credential_values = [str(value) for value in target.credentials.values() if isinstance(value, str | int)]
    return [target.api_key, target.webhook_secret, *credential_values]


def playground_view(request, site: admin.AdminSite):
    numbers = numbers_visible(request)
    outcome = None
    if request.method == "POST":
        form = PlaygroundForm(request.POST, numbers=numbers)
        if form.is_valid():
            outcome = playground_send(
                number=form.cleaned_data["number"],
                recipient=form.cleaned_data["recipient"],
                text=form.cleaned_data["text"],
            )
    else:
        form = PlaygroundForm(numbers=numbers)
    context = {**site.each_context(request), "title": "Provider playground", "form": form, "outcome": outcome}
    return TemplateResponse(request, "admin/provider_playground.html", context)
