from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from crm import selectors, services


@login_required
def home(request: HttpRequest) -> HttpResponse:
    membership = request.membership
    context = {
        "memberships": selectors.memberships_of_user(user=request.user),
        "overview": membership and selectors.organization_overview(membership=membership),
    }
    return render(request, "crm/home.html", context)


@login_required
@require_POST
def organization_switch(request: HttpRequest) -> HttpResponse:
    try:
        organization_id = int(request.POST.get("organization_id", ""))
    except ValueError:
        return HttpResponse("Choose an organization.", status=400)
    try:
        services.organization_switch(user=request.user, session=request.session, organization_id=organization_id)
    except PermissionDenied:
        # The same answer as for an organization that does not exist: no probing for ids.
        return HttpResponse("No such organization.", status=404)
    return redirect("crm:home")
