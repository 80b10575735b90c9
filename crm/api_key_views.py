"""The API keys page: an organization's admins create keys (shown once) and revoke them."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from crm.models import Membership
from crm.selectors import api_keys_of_organization
from crm.services import api_key_create, api_key_revoke


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="What the key is for, such as 'Zapier' or 'ERP sync'.")


def _admin_membership(request: HttpRequest) -> Membership:
    membership = request.membership
    if membership is None or not membership.is_admin:
        raise PermissionDenied("Only admins of the organization manage its API keys.")
    return membership


@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """List the organization's keys; a POST creates one and shows it this once."""
    membership = _admin_membership(request)
    form = ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        # Rendered in this response, never redirected: the key must not sit in a cookie or session.
        new_key = api_key_create(
            organization=membership.organization, name=form.cleaned_data["name"], created_by=request.user
        )
        form = ApiKeyForm()
    context = {
        "form": form,
        "new_key": new_key,
        "api_keys": api_keys_of_organization(organization_id=membership.organization_id),
    }
    response = render(request, "crm/api_keys/list.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, api_key_id: int) -> HttpResponse:
    membership = _admin_membership(request)
    api_key = get_object_or_404(api_keys_of_organization(organization_id=membership.organization_id), pk=api_key_id)
    api_key_revoke(api_key=api_key)
    messages.success(request, f"The key {api_key.prefix}… is revoked.")
    return redirect("crm:api-keys")
