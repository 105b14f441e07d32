"""The routes admin: every contract term on one page, the key's variable but never the key."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from studio.models import Route

pytestmark = pytest.mark.django_db
SECRET = "sk-live-THIS-IS-THE-KEY-AND-MUST-NOT-SHOW"


@pytest.fixture
def seeded(db) -> dict[str, Route]:
    call_command("seed_studio", verbosity=0)
    return {route.name: route for route in Route.objects.all()}


@pytest.fixture
def admin_client(client, admin_user):
    admin_user.is_superuser = True  # the Django admin's own permissions
    admin_user.save(update_fields=["is_superuser"])
    client.force_login(admin_user)
    return client


def form_data(route: Route, **changes) -> dict:
    data = {
        "name": route.name,
        "owner": route.owner,
        "base_url": route.base_url,
        "api_key_env": route.api_key_env,
        "model_map": '{"gpt-image-2": "gpt-image-2"}',
        "pricing_mode": route.pricing_mode,
        "price_per_call": route.price_per_call or "",
        "timeout_seconds": route.timeout_seconds,
        "max_attempts": route.max_attempts,
        "timeout_retries": route.timeout_retries,
        "fallback": route.fallback_id or "",
        "retention_days": "",
        "enabled": "on" if route.enabled else "",
        "assistant_model": route.assistant_model,
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_the_list_shows_each_contract_and_whether_its_key_is_set(admin_client, seeded, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("LAOZHANG_API_KEY", raising=False)
    monkeypatch.delenv("SANDBOX_API_KEY", raising=False)
    html = admin_client.get(reverse("admin:studio_route_changelist")).content.decode()
    assert SECRET not in html
    assert "OPENAI_API_KEY (set)" in html
    assert "LAOZHANG_API_KEY (not set)" in html
    assert "SANDBOX_API_KEY (not set; optional for the sandbox)" in html
    assert "$0.0300 per image, laozhang.ai&#x27;s flat price" in html
    assert "gpt-image-2 → gpt-image-2" in html
    assert "Route openai is disabled." in html and "ready" in html
    assert "Attempts on this route" in html


def test_the_change_page_names_the_variable_never_the_key(admin_client, seeded, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    url = reverse("admin:studio_route_change", args=[seeded["openai"].pk])
    html = admin_client.get(url).content.decode()
    assert SECRET not in html
    assert "OPENAI_API_KEY is set in this web process" in html
    for term in ("Model mapping", "Pricing", "Capabilities", "supports_transparent", "fallback"):
        assert term in html


def test_a_pasted_key_is_refused(admin_client, seeded):
    route = seeded["openai"]
    url = reverse("admin:studio_route_change", args=[route.pk])
    response = admin_client.post(url, form_data(route, api_key_env=SECRET))
    assert response.status_code == 200
    assert "looks like a key" in response.content.decode()
    route.refresh_from_db()
    assert route.api_key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_map": '["gpt-image-2"]'}, "Write an object of model names"),
        ({"model_map": '{"gpt-image-2": ""}'}, "Write an object of model names"),
        ({"api_key_env": "MY KEY"}, "A variable name"),
        ({"pricing_mode": "per_call", "price_per_call": ""}, "needs its price per call"),
    ],
)
def test_bad_contract_terms_are_refused(admin_client, seeded, changes, message):
    route = seeded["openai"]
    url = reverse("admin:studio_route_change", args=[route.pk])
    response = admin_client.post(url, form_data(route, **changes))
    assert response.status_code == 200
    assert message in response.content.decode()


def test_a_route_cannot_fall_back_to_itself(admin_client, seeded):
    route = seeded["openai"]
    url = reverse("admin:studio_route_change", args=[route.pk])
    response = admin_client.post(url, form_data(route, fallback=route.pk))
    assert "cannot be its own fallback" in response.content.decode()


def test_a_good_change_is_saved_with_its_mapping(admin_client, seeded):
    route = seeded["openai"]
    url = reverse("admin:studio_route_change", args=[route.pk])
    response = admin_client.post(
        url,
        form_data(
            route,
            model_map='{"gpt-image-2": "gpt-image-2-2026-04-21"}',
            fallback=seeded["laozhang"].pk,
            supports_streaming="on",
        ),
    )
    assert response.status_code == 302
    route.refresh_from_db()
    assert route.model_sent_for("gpt-image-2") == "gpt-image-2-2026-04-21"
    assert route.fallback == seeded["laozhang"] and route.supports_streaming


def test_an_image_model_is_refused_as_the_assistant_model(admin_client, seeded):
    route = seeded["openai"]
    url = reverse("admin:studio_route_change", args=[route.pk])
    response = admin_client.post(url, form_data(route, assistant_model="gpt-image-2"))
    assert response.status_code == 200
    assert "is an image model" in response.content.decode()
    route.refresh_from_db()
    assert route.assistant_model == "gpt-5.4"


def test_non_staff_users_cannot_reach_it(client, designer, seeded):
    client.force_login(designer)
    response = client.get(reverse("admin:studio_route_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response.url
