"""Personal API tokens: made on the settings page (shown once), stored hashed, expiring,
revocable by their user or an admin, printed by a management command."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from api.models import ApiToken, TokenRefused

pytestmark = pytest.mark.django_db


def test_the_settings_page_shows_a_new_token_once_and_stores_only_its_hash(client, designer):
    client.force_login(designer)
    response = client.post(reverse("api:tokens"), {"name": "banner script", "expires": "30"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [token] = ApiToken.objects.filter(user=designer)
    secret = response.context["created"].secret
    assert secret.startswith("sts_") and len(secret) > 40
    assert secret in response.content.decode()
    assert token.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    # Nothing the studio stores holds the secret itself.
    assert all(secret not in str(value) for value in vars(token).values())
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    # The next visit lists the token by its prefix, never the secret.
    page = client.get(reverse("api:tokens")).content.decode()
    assert secret not in page and token.display_prefix in page and "banner script" in page


def test_a_nameless_token_is_refused_with_the_field_named(client, designer):
    client.force_login(designer)
    response = client.post(reverse("api:tokens"), {"name": "", "expires": "forever"})
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"name", "expires"}
    assert not ApiToken.objects.exists()


def test_authenticate_accepts_a_live_token_and_notes_its_use(designer):
    created = ApiToken.create_for(designer, "ci")
    token = ApiToken.authenticate(created.secret)
    assert token.user == designer
    assert token.last_used_at is not None
    created.token.refresh_from_db()
    assert created.token.last_used_at == token.last_used_at


@pytest.mark.parametrize(
    ("raw", "words"),
    [(None, "didn't provide"), ("", "didn't provide"), ("sts_nope", "is not a studio API token")],
)
def test_authenticate_refuses_missing_and_unknown_tokens(db, raw, words):
    with pytest.raises(TokenRefused, match=words):
        ApiToken.authenticate(raw)


def test_expired_revoked_and_deactivated_tokens_do_not_authenticate(designer, admin_user):
    expired = ApiToken.create_for(designer, "old", timezone.now() - timedelta(seconds=1))
    with pytest.raises(TokenRefused, match="expired"):
        ApiToken.authenticate(expired.secret)
    revoked = ApiToken.create_for(designer, "gone")
    assert revoked.token.revoke(admin_user) and not revoked.token.revoke(admin_user)
    with pytest.raises(TokenRefused, match="revoked"):
        ApiToken.authenticate(revoked.secret)
    live = ApiToken.create_for(designer, "live")
    designer.is_active = False
    designer.save()
    with pytest.raises(TokenRefused, match="deactivated"):
        ApiToken.authenticate(live.secret)


def test_a_user_revokes_their_own_token_but_not_anothers(client, designer, other_designer):
    mine = ApiToken.create_for(designer, "mine").token
    theirs = ApiToken.create_for(other_designer, "theirs").token
    client.force_login(designer)
    assert client.post(reverse("api:token-revoke", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("api:token-revoke", args=[mine.pk])).status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.state == "revoked" and mine.revoked_by == designer
    assert theirs.state == "active"


def test_admins_list_and_revoke_everyones_tokens(client, designer, admin_user):
    token = ApiToken.create_for(designer, "designer's script").token
    client.force_login(admin_user)
    page = client.get(reverse("api:token-all")).content.decode()
    assert "designer&#x27;s script" in page and designer.username in page
    response = client.post(reverse("api:token-revoke", args=[token.pk]), {"next": "all"})
    assert response.url == reverse("api:token-all")
    token.refresh_from_db()
    assert token.revoked_by == admin_user


def test_create_api_token_prints_a_working_token(designer):
    out = StringIO()
    call_command(
        "create_api_token", designer.username, "--name", "tests", "--days", "7", stdout=out
    )
    secret = out.getvalue().strip()
    token = ApiToken.authenticate(secret)
    assert (token.user, token.name) == (designer, "tests")
    assert timedelta(days=6) < token.expires_at - timezone.now() <= timedelta(days=7)


def test_create_api_token_names_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_api_token", "nobody", "--name", "x")
