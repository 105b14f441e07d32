"""Walk every URL the studio serves and check who may open it.

Every named URL must appear in EXPECTED below (or in PUBLIC): a new view fails this test
until someone has decided, here, who may see it. Each object URL is checked for every role
and for the owner against another user's object.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from studio.models import (
    GenerationRequest,
)

pytestmark = pytest.mark.django_db

PUBLIC = {"login", "healthz", "logout", "favicon"}
ROLES = ("anonymous", "owner", "other_designer", "reviewer", "admin", "outsider")
LOGIN = "login"  # a redirect to the login page

# Who gets what. owner/other_designer are designers; "other" sees the owner's objects.
DESIGNER_PAGE = {
    "anonymous": LOGIN,
    "owner": 200,
    "other_designer": 200,
    "reviewer": 403,
    "admin": 200,
    "outsider": 403,
}
OWN_OBJECT = {
    "anonymous": LOGIN,
    "owner": 200,
    "other_designer": 404,
    "reviewer": 200,
    "admin": 200,
    "outsider": 404,
}
OWN_OBJECT_ACTION = {
    "anonymous": LOGIN,
    "owner": 302,
    "other_designer": 404,
    "reviewer": 403,
    "admin": 302,
    "outsider": 403,
}
REVIEWER_PAGE = {
    "anonymous": LOGIN,
    "owner": 403,
    "other_designer": 403,
    "reviewer": 200,
    "admin": 200,
    "outsider": 403,
}
ADMIN_PAGE = {
    "anonymous": LOGIN,
    "owner": 403,
    "other_designer": 403,
    "reviewer": 403,
    "admin": 200,
    "outsider": 403,
}
# A designer's own working space; admins may look in, reviewers review the turns' requests.
OWN_CONVERSATION = {
    "anonymous": LOGIN,
    "owner": 200,
    "other_designer": 404,
    "reviewer": 403,
    "admin": 200,
    "outsider": 403,
}
SIGNED_IN = {
    "anonymous": LOGIN,
    "owner": 200,
    "other_designer": 200,
    "reviewer": 200,
    "admin": 200,
    "outsider": 200,
}

EXPECTED = {
    "studio:home": (
        "GET",
        {**DESIGNER_PAGE, "owner": 302, "other_designer": 302, "reviewer": 302, "admin": 302},
    ),
    "studio:request-list": ("GET", DESIGNER_PAGE),
    "studio:request-new": ("GET", DESIGNER_PAGE),
    "studio:composer-preview": ("POST", DESIGNER_PAGE),
    "studio:edit-new": ("GET", DESIGNER_PAGE),
    "studio:edit-preview": ("POST", DESIGNER_PAGE),
    "studio:request-detail": ("GET", OWN_OBJECT),
    "studio:request-run-again": ("POST", OWN_OBJECT_ACTION),
    "studio:request-cancel": ("POST", OWN_OBJECT_ACTION),
    # Opens the edit page filled in (a GET: nothing is submitted); only the designer.
    "studio:suggested-edit": ("GET", {**OWN_OBJECT_ACTION, "admin": 404}),
    "studio:suggested-region": (
        "GET",
        {**OWN_OBJECT, "admin": 404, "reviewer": 403, "outsider": 403},
    ),
    "studio:turn-labels": ("POST", DESIGNER_PAGE),
    "studio:conversation-list": ("GET", DESIGNER_PAGE),
    "studio:conversation-new": ("GET", DESIGNER_PAGE),
    "studio:conversation-detail": ("GET", OWN_CONVERSATION),
    # An empty message re-renders the page with its error; only the owner may speak.
    "studio:conversation-turn": ("POST", {**OWN_CONVERSATION, "admin": 404}),
    "studio:output-file": ("GET", OWN_OBJECT),
    "studio:output-drift": ("GET", OWN_OBJECT),
    "studio:input-file": ("GET", OWN_OBJECT),
    "studio:output-download": ("GET", OWN_OBJECT),
    "studio:output-thumbnail": ("GET", OWN_OBJECT),
    "studio:input-download": ("GET", OWN_OBJECT),
    "review:queue": ("GET", REVIEWER_PAGE),
    "review:output": ("GET", REVIEWER_PAGE),
    "review:inspection": ("GET", REVIEWER_PAGE),
    "review:decide": ("POST", {**REVIEWER_PAGE, "reviewer": 200, "admin": 200}),
    "audit:dashboard": ("GET", ADMIN_PAGE),
    "audit:attempts": ("GET", ADMIN_PAGE),
    "audit:export": ("GET", ADMIN_PAGE),
    "audit:frames": ("GET", ADMIN_PAGE),
    "campaigns:list": ("GET", DESIGNER_PAGE),
    "campaigns:new": ("GET", DESIGNER_PAGE),
    "campaigns:detail": ("GET", OWN_OBJECT),
    "campaigns:cancel": ("POST", OWN_OBJECT_ACTION),
    "campaigns:retry-failed": ("POST", OWN_OBJECT_ACTION),
    "campaigns:row-again": ("POST", OWN_OBJECT_ACTION),
    "campaigns:download": ("GET", OWN_OBJECT),
    "campaigns:publish": ("POST", OWN_OBJECT_ACTION),
    "api:tokens": ("GET", SIGNED_IN),
    "api:token-all": ("GET", ADMIN_PAGE),
    # Your own token; an admin revokes anyone's.
    "api:token-revoke": (
        "POST",
        {**OWN_OBJECT_ACTION, "reviewer": 404, "outsider": 404},
    ),
    # The OpenAI door takes a bearer API token only, never a session (tests/test_openai_door).
    "door:images-generations": ("POST", dict.fromkeys(ROLES, 401)),
    "door:images-edits": ("POST", dict.fromkeys(ROLES, 401)),
    "door:responses": ("POST", dict.fromkeys(ROLES, 401)),
    "door:not-found": ("POST", dict.fromkeys(ROLES, 404)),
    # The REST API takes a bearer API token only (tests/test_rest_api); schema and docs are
    # public, like any published API's.
    "rest:openapi-json": ("GET", dict.fromkeys(ROLES, 200)),
    "rest:openapi-view": ("GET", dict.fromkeys(ROLES, 200)),
    "rest:api-root": ("GET", dict.fromkeys(ROLES, 404)),
    "rest:generate": ("POST", dict.fromkeys(ROLES, 401)),
    "rest:edit": ("POST", dict.fromkeys(ROLES, 401)),
    "rest:list_requests": ("GET", dict.fromkeys(ROLES, 401)),
    "rest:read_request": ("GET", dict.fromkeys(ROLES, 401)),
    "rest:cancel_request": ("POST", dict.fromkeys(ROLES, 401)),
    "rest:output_file": ("GET", dict.fromkeys(ROLES, 401)),
    "rest:review_queue": ("GET", dict.fromkeys(ROLES, 401)),
    "rest:record_decision": ("POST", dict.fromkeys(ROLES, 401)),
    # Webhooks are their owner's alone (admins included: a hook's log is its owner's).
    "webhooks:list": ("GET", SIGNED_IN),
    "webhooks:detail": ("GET", {**OWN_OBJECT, "reviewer": 404, "admin": 404}),
    "webhooks:delete": (
        "POST",
        {**OWN_OBJECT_ACTION, "reviewer": 404, "admin": 404, "outsider": 404},
    ),
    "webhooks:replay": (
        "POST",
        {**OWN_OBJECT_ACTION, "reviewer": 404, "admin": 404, "outsider": 404},
    ),
    "password_change": ("GET", SIGNED_IN),
    "password_change_done": ("GET", SIGNED_IN),
}


def walk_urls(patterns=None, namespace: str = "", prefix: str = ""):
    """Every URL pattern served, admin and sandbox included, as (key, pattern, route): the
    key is the pattern's namespaced name, or its full route when it has none."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from walk_urls(pattern.url_patterns, inner, route)
        else:
            yield (f"{namespace}{pattern.name}" if pattern.name else route), pattern, route


def named_urls() -> list[tuple[str, URLPattern]]:
    return [
        (key, pattern)
        for key, pattern, _route in walk_urls()
        if pattern.name and not key.startswith(("admin:", "sandbox:"))
    ]


def test_every_url_has_a_decision_about_who_may_open_it():
    undecided = sorted({name for name, _ in named_urls()} - set(EXPECTED) - PUBLIC)
    assert undecided == [], f"add these to EXPECTED in {__name__}: {undecided}"


@pytest.fixture
def users(designer, other_designer, reviewer, admin_user, outsider):
    return {
        "anonymous": None,
        "owner": designer,
        "other_designer": other_designer,
        "reviewer": reviewer,
        "admin": admin_user,
        "outsider": outsider,
    }


CASES = [(name, role) for name in EXPECTED for role in ROLES]


@pytest.mark.parametrize(("name", "role"), CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_who_may_open_what(client, users, objects, monkeypatch, name, role):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    method, expected_by_role = EXPECTED[name]
    pattern = dict(named_urls())[name]
    kwargs = {key: objects[key] for key in pattern.pattern.converters}
    url = reverse(name, kwargs=kwargs)
    if users[role] is not None:
        client.force_login(users[role])
    response = client.get(url) if method == "GET" else client.post(url, {})
    expected = expected_by_role[role]
    if expected == LOGIN:
        assert response.status_code == 302 and response.url.startswith(reverse("login")), (
            f"{name} let an anonymous visitor in ({response.status_code})"
        )
    else:
        assert response.status_code == expected, f"{name} as {role}: {response.status_code}"
