from __future__ import annotations


def roles(request) -> dict:
    """Which parts of the studio the navigation offers this user."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    names = set(user.groups.values_list("name", flat=True))
    admin = user.is_superuser or "admin" in names
    return {
        "is_designer": admin or "designer" in names,
        "is_reviewer": admin or "reviewer" in names,
        "is_admin": admin,
    }
