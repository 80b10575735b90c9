from config.log_context import log_fields_bind
from crm.selectors import membership_current


class CurrentOrganizationMiddleware:
    """Attach the membership the user is working in (`request.membership`), chosen per session."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Anonymous requests (provider webhooks, the login page) have no organization to look up.
        is_signed_in = request.user.is_authenticated
        request.membership = membership_current(user=request.user, session=request.session) if is_signed_in else None
        if request.membership is not None:
            log_fields_bind(organization_id=request.membership.organization_id)
        return self.get_response(request)
