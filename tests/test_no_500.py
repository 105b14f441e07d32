"""No input answers 500: every URL pattern x role x method, with hostile values.

Every URL pattern the studio serves (the Django admin and the sandbox included) is asked
with GET, HEAD and POST by an anonymous visitor, a designer, a reviewer and an admin, with
values Hypothesis draws from hostile families (NUL and other control characters, huge and
negative numbers, far dates, long strings, wrong types, unicode digits) in the query string
and the POST body, under the parameter names each view reads. Whatever comes in, the answer
is a page, a redirect or a 4xx; never a 5xx. HEAD is answered wherever GET is.

A new URL pattern fails `test_every_url_has_its_parameters_listed` until its parameters are
listed in PARAMETERS (or, for the admin, until its kind is in ADMIN_KINDS). The examples are
derandomized, so a run in CI asks exactly what a run here asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from review.audit import AuditFilter
from studio.models import GenerationRequest, Route
from tests.test_url_permissions import walk_urls

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "designer", "reviewer", "admin")
METHODS = ("GET", "HEAD", "POST")

# --- Hostile values ------------------------------------------------------------------------

C0_CONTROLS = "".join(chr(code) for code in range(32))
FIXED = [
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "9999-12-31",
    "0001-01-01",
    "10000-01-01",
    "-1",
    "0",
    "99999999999999999999999999",
    "-99999999999999999999999999",
    "1e308",
    "NaN",
    "inf",
    "1.5",
    "²",  # a digit to str.isdigit(), not to int()
    "٣",  # an Arabic-Indic three
    "[]",
    '{"a": 1}',
    "true",
    "../../etc/passwd",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "x" * 5000,
    "é" * 300,
    "00000000-0000-0000-0000-000000000000",
    "1024x1024",
    "99999x99999",
    "custom",
    "transparent",
    "\u202e\ufeff",
    "😀",
]
CONTROLLED = st.text(alphabet=C0_CONTROLS + "a", min_size=1, max_size=8).filter(
    lambda value: value.strip("a\t\n\r")
)
HOSTILE = st.one_of(
    st.sampled_from(FIXED),
    st.text(max_size=40),
    CONTROLLED,
    # Past any column's length; chosen, not generated, so an example stays small to draw.
    st.sampled_from(["x" * 256, "é" * 1000, "9" * 2000, "word " * 400, "-" * 300]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.dates().map(lambda day: day.isoformat()),
    st.uuids().map(str),
)
# What a file field may receive: nothing like an image, a PNG signature and no more, a
# header that declares 100000 x 100000 pixels.
HOSTILE_FILES = st.sampled_from(
    [
        b"",
        b"\x00" * 64,
        b"\x89PNG\r\n\x1a\n",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x06\x00\x00"
        b"\x00\x00\x00\x00\x00",
        b"<html><script>alert(1)</script></html>",
        b"RIFF\xff\xff\xff\xffWEBPVP8 ",
        b"\xff\xd8\xff\xe0" + b"\x00" * 32,
    ]
)


@dataclass(frozen=True)
class Parameters:
    """The names a view reads from the query string, the form body and the files."""

    get: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


COMPOSER = (
    "frame",
    "prompt",
    "route",
    "size",
    "width",
    "height",
    "quality",
    "output_format",
    "output_compression",
    "background",
    "n",
    "partial_images",
    "action",
    "slot_product",
    "slot_headline",
    "extra_labels",
    "submission_key",
)
EDIT = (*COMPOSER, "source_output", "input_sizes")
EDIT_FILES = ("source", "references", "mask")
AUDIT = ("start", "end", *AuditFilter.PARAMS, "fallback", "page")
SANDBOX = ("model", "prompt", "size", "quality", "n", "output_format", "background", "stream")

CAMPAIGN = (
    "name",
    "frame",
    "template",
    "route",
    "when",
    "size",
    "quality",
    "output_format",
    "n",
    "layout",
    "table",
    "file_name_pattern",
    "action",
)

DOOR = (*SANDBOX, "route")
PARAMETERS = {
    "studio:home": Parameters(),
    "studio:request-list": Parameters(
        get=("q", "status", "frame", "review", "route", "start", "end", "view", "older", "newer")
    ),
    "studio:request-new": Parameters(get=("frame", "from"), post=COMPOSER),
    "studio:composer-preview": Parameters(post=COMPOSER),
    "studio:edit-new": Parameters(
        get=("frame", "from", "output", "decision"), post=EDIT, files=EDIT_FILES
    ),
    "studio:edit-preview": Parameters(post=EDIT),
    "studio:request-detail": Parameters(),
    "studio:request-run-again": Parameters(),
    "studio:request-cancel": Parameters(),
    "studio:suggested-edit": Parameters(),
    "studio:suggested-region": Parameters(),
    "studio:turn-labels": Parameters(
        post=(
            "message",
            "extra_labels",
            "conversation",
            "route",
            "size",
            "quality",
            "partial_images",
        )
    ),
    "studio:conversation-list": Parameters(),
    "studio:conversation-new": Parameters(
        post=(
            "title",
            "route",
            "size",
            "quality",
            "output_format",
            "partial_images",
            "message",
            "extra_labels",
            "submission_key",
        )
    ),
    "studio:conversation-detail": Parameters(),
    "studio:conversation-turn": Parameters(post=("message", "extra_labels", "submission_key")),
    "studio:output-file": Parameters(),
    "studio:output-drift": Parameters(),
    "studio:input-file": Parameters(),
    "studio:output-download": Parameters(),
    "studio:output-thumbnail": Parameters(),
    "studio:input-download": Parameters(),
    "review:queue": Parameters(get=("frame", "route", "designer", "flagged", "age", "page")),
    "review:output": Parameters(),
    "review:inspection": Parameters(
        post=(
            "observed_0",
            "verdict_0",
            "source_0",
            "new_label",
            "new_observed",
            "new_verdict",
        )
    ),
    "review:decide": Parameters(post=("reason", "region", "approve", "reject", "request_changes")),
    "audit:dashboard": Parameters(get=AUDIT),
    "audit:attempts": Parameters(get=AUDIT),
    "audit:export": Parameters(get=AUDIT),
    "audit:frames": Parameters(get=("frame",)),
    "api:tokens": Parameters(post=("name", "expires")),
    "api:token-all": Parameters(),
    "api:token-revoke": Parameters(post=("next",)),
    # The door's own walk with a valid token is tests/test_openai_door.py's fuzz.
    "door:images-generations": Parameters(post=DOOR),
    "door:images-edits": Parameters(post=DOOR, files=("image", "image[]", "mask")),
    "door:responses": Parameters(post=("model", "input", "tools", "previous_response_id")),
    "door:not-found": Parameters(),
    # With a token, tests/test_rest_api.py walks the REST API's bodies and queries.
    "rest:openapi-json": Parameters(),
    "rest:openapi-view": Parameters(),
    "rest:api-root": Parameters(),
    "rest:generate": Parameters(post=("prompt", "size", "route", "n")),
    "rest:edit": Parameters(post=("prompt", "size", "source_output"), files=("source", "mask")),
    "rest:list_requests": Parameters(get=("cursor", "limit", "status", "operation", "mine")),
    "rest:read_request": Parameters(),
    "rest:cancel_request": Parameters(),
    "rest:output_file": Parameters(),
    "rest:review_queue": Parameters(get=("cursor", "limit")),
    "rest:record_decision": Parameters(post=("verdict", "reason")),
    "webhooks:list": Parameters(post=("url", "events")),
    "webhooks:detail": Parameters(),
    "webhooks:delete": Parameters(),
    "webhooks:replay": Parameters(),
    "login": Parameters(get=("next",), post=("username", "password", "next")),
    "logout": Parameters(post=("next",)),
    "password_change": Parameters(post=("old_password", "new_password1", "new_password2")),
    "password_change_done": Parameters(),
    "healthz": Parameters(),
    "favicon": Parameters(),
    "campaigns:list": Parameters(get=("page",)),
    "campaigns:new": Parameters(post=CAMPAIGN, files=("table_file",)),
    "campaigns:detail": Parameters(get=("page", "part")),
    "campaigns:cancel": Parameters(),
    "campaigns:retry-failed": Parameters(),
    "campaigns:row-again": Parameters(),
    "campaigns:download": Parameters(),
    "campaigns:publish": Parameters(),
    "sandbox:images-generations": Parameters(post=SANDBOX),
    "sandbox:images-edits": Parameters(post=SANDBOX, files=("image", "image[]", "mask")),
    "sandbox:responses": Parameters(post=("model", "input", "tools", "previous_response_id")),
    "sandbox:files": Parameters(post=("purpose",), files=("file",)),
    "sandbox:file": Parameters(),
    "sandbox:file-content": Parameters(),
    "sandbox:batches": Parameters(
        get=("limit", "after"), post=("input_file_id", "endpoint", "completion_window")
    ),
    "sandbox:batch": Parameters(),
    "sandbox:batch-cancel": Parameters(),
}

# The Django admin's own views, by the end of their URL name; the model views read the
# changelist's parameters and the model's form fields (see admin_parameters).
CHANGELIST = ("q", "o", "p", "e", "all", "_popup", "_to_field")
ADMIN_KINDS = {
    "index": Parameters(),
    "login": Parameters(get=("next",), post=("username", "password", "next")),
    "logout": Parameters(post=("next",)),
    "password_change": Parameters(post=("old_password", "new_password1", "new_password2")),
    "password_change_done": Parameters(),
    "jsi18n": Parameters(),
    "app_list": Parameters(),
    "autocomplete": Parameters(get=("term", "app_label", "model_name", "field_name", "page")),
    "view_on_site": Parameters(),
    "changelist": Parameters(get=CHANGELIST, post=("action", "_selected_action", "index")),
    "add": Parameters(get=("_changelist_filters",), post=("_save", "_continue")),
    "change": Parameters(get=("_changelist_filters",), post=("_save", "_continue")),
    "delete": Parameters(get=("_changelist_filters",)),
    "history": Parameters(get=("p",)),
    "password_change_user": Parameters(post=("password1", "password2", "usable_password")),
    "redirect": Parameters(),
    "catch_all": Parameters(),
}
CATCH_ALL = "admin/(?P<url>.*)$"
ADMIN_MODEL_VIEW = re.compile(r"^admin:(?P<app>\w+?)_(?P<model>[a-z0-9]+)_(?P<kind>\w+)$")


def admin_kind(key: str) -> str | None:
    if key == CATCH_ALL:
        return "catch_all"
    if key.startswith("admin/") and key.endswith("<path:object_id>/"):
        return "redirect"  # unnamed: the old change URL, redirected to the new one
    if not key.startswith("admin:"):
        return None
    if key == "admin:auth_user_password_change":
        return "password_change_user"
    name = key.removeprefix("admin:")
    if name in ADMIN_KINDS:
        return name
    match = ADMIN_MODEL_VIEW.match(key)
    return match.group("kind") if match and match.group("kind") in ADMIN_KINDS else None


def admin_model(key: str, route: str):
    """The model an admin URL is about, from its name or its route."""
    match = ADMIN_MODEL_VIEW.match(key) or re.match(r"^admin/(?P<app>\w+)/(?P<model>\w+)/", route)
    if not match:
        return None
    for model in admin.site._registry:
        if (model._meta.app_label, model._meta.model_name) == match.group("app", "model"):
            return model
    return None


def admin_parameters(key: str, route: str) -> Parameters:
    kind = admin_kind(key)
    base = ADMIN_KINDS.get(kind, Parameters())
    model = admin_model(key, route)
    if model is None:
        return base
    model_admin = admin.site._registry[model]
    fields = tuple(
        field.name for field in model._meta.get_fields() if getattr(field, "editable", False)
    )
    filters = []
    for entry in model_admin.list_filter:
        if isinstance(entry, type):  # a SimpleListFilter names its own parameter
            filters.append(entry.parameter_name)
            continue
        name = entry if isinstance(entry, str) else entry[0]
        lookups = ("exact", "id__exact", "isnull", "gte", "lt", "in")
        filters += [f"{name}__{lookup}" for lookup in lookups]
    if model_admin.date_hierarchy:
        filters += [f"{model_admin.date_hierarchy}__{part}" for part in ("year", "month", "day")]
    return Parameters(
        get=(*base.get, *filters),
        post=(*base.post, *(fields if kind in ("add", "change") else ())),
        files=base.files,
    )


def parameters_for(key: str, route: str) -> Parameters | None:
    if key in PARAMETERS:
        return PARAMETERS[key]
    if admin_kind(key) is not None:
        return admin_parameters(key, route)
    return None


PATTERNS = sorted((key, route) for key, _pattern, route in walk_urls())


def test_every_url_has_its_parameters_listed():
    unlisted = [key for key, route in PATTERNS if parameters_for(key, route) is None]
    assert unlisted == [], f"list the parameters these views read in {__name__}: {unlisted}"


# --- Building the requests -----------------------------------------------------------------


@pytest.fixture
def role_users(designer, reviewer, admin_user):
    # The admin role sees every admin page: the demo admin account is a superuser.
    admin_user.is_superuser = True
    admin_user.save(update_fields=["is_superuser"])
    return {"anonymous": None, "designer": designer, "reviewer": reviewer, "admin": admin_user}


def admin_object_id(model, ids) -> str:
    known = {
        "generationrequest": ids["request_id"],
        "outputimage": ids["output_id"],
        "conversation": ids["conversation_id"],
    }
    if model is None:
        return "1"
    if model._meta.model_name in known:
        return str(known[model._meta.model_name])
    first = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
    return str(first if first is not None else 1)


def path_of(key: str, pattern, route: str, ids, data) -> str:
    """The URL to ask: real objects for the studio's ids, real or hostile ids for the admin."""
    converters = pattern.pattern.converters if hasattr(pattern.pattern, "converters") else {}
    path_value = st.one_of(
        st.just(admin_object_id(admin_model(key, route), ids)),
        HOSTILE.filter(lambda value: value.strip() and not {"/", "\n"} & set(value)),
    )
    kwargs = {}
    for name in converters:
        if name in ids:
            kwargs[name] = ids[name]
        elif name == "decision_id":
            kwargs[name] = data.draw(st.sampled_from([ids[name], 2**70, 0]))
        else:
            kwargs[name] = data.draw(path_value, label=name)
    if key == CATCH_ALL:
        return "/admin/" + data.draw(st.sampled_from(["nothing/here", "studio/x/y/z", ""]))
    if key == "admin:app_list":
        return reverse(key, kwargs={"app_label": data.draw(st.sampled_from(["studio", "auth"]))})
    if pattern.name:
        return reverse(key, kwargs=kwargs)
    # An admin pattern without a name: its route with the values put in.
    path = route
    for name, value in kwargs.items():
        path = re.sub(rf"<\w+:{name}>|<{name}>", str(value).replace("%", "%25"), path)
    return "/" + path


def values(data, names: tuple[str, ...]) -> dict[str, str]:
    """Hostile values for every name; at most one of them carries control characters, so the
    rest of the form still reaches the view behind the middleware that refuses those."""
    drawn = {name: strip_controls(data.draw(HOSTILE, label=name)) for name in names}
    poisoned = data.draw(st.sampled_from([None, *names]), label="poisoned")
    if poisoned is not None:
        drawn[poisoned] = data.draw(CONTROLLED, label=poisoned)
    return drawn


def strip_controls(value: str) -> str:
    return value.translate(dict.fromkeys(range(32)))


def files(data, names: tuple[str, ...]) -> dict[str, SimpleUploadedFile]:
    return {
        name: SimpleUploadedFile(f"{name}.png", data.draw(HOSTILE_FILES, label=name), "image/png")
        for name in names
    }


def ask(client, method: str, path: str, query: dict, body: dict):
    if method == "GET":
        return client.get(path, query)
    if method == "HEAD":
        return client.head(path, query)
    return client.post(path, body)


FUZZ = hypothesis_settings(
    max_examples=2,
    derandomize=True,
    database=None,
    # No shrinking: the failing request is printed as it was asked, and a run stays short.
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
# A page (or a form with its errors), a redirect; anything else must be a 4xx.
ANSWERS = (200, 302)
PATTERN_BY_KEY = {key: (pattern, route) for key, pattern, route in walk_urls()}


@pytest.mark.parametrize("key", [key for key, _route in PATTERNS])
@FUZZ
@given(data=st.data())
def test_no_input_answers_a_server_error(
    client, role_users, objects, monkeypatch, settings, key, data
):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    settings.SUBMISSIONS_PER_MINUTE = 10_000
    pattern, route = PATTERN_BY_KEY[key]
    parameters = parameters_for(key, route)
    assert parameters is not None, f"list the parameters of {key}"
    Route.objects.filter(name="sandbox").update(supports_transparent=True)
    for role in ROLES:
        client.logout()
        if role_users[role] is not None:
            client.force_login(role_users[role])
        path = path_of(key, pattern, route, objects, data)
        query = values(data, parameters.get)
        body = {**values(data, parameters.post), **files(data, parameters.files)}
        statuses = {}
        for method in METHODS:
            response = ask(client, method, path, query, body)
            statuses[method] = response.status_code
            assert response.status_code in ANSWERS or 400 <= response.status_code < 500, (
                f"{method} {path} as {role} answered {response.status_code}"
            )
        assert not (statuses["GET"] != 405 and statuses["HEAD"] == 405), (
            f"HEAD {path} as {role} answered 405 where GET answers {statuses['GET']}"
        )
