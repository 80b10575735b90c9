def current_organization(request) -> dict:
    membership = getattr(request, "membership", None)
    return {"current_membership": membership, "current_organization": membership and membership.organization}
