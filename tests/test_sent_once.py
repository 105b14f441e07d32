"""One shown form makes one request: a double click, Ctrl+Enter pressed twice or a browser
resending the same POST never makes a second paid call (found by a new-user walk: three
quick Ctrl+Enter made three requests on the composer and the edit page, two billed turns in
a conversation)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from studio.models import Conversation, GenerationRequest, SubmissionKey
from tests.test_assistant import new_conversation_data
from tests.test_composer import SETTINGS

pytestmark = pytest.mark.django_db


def shown_key(client, url: str) -> str:
    body = client.get(url).content.decode()
    [key] = re.findall(r'name="submission_key" value="([0-9a-f]{32})"', body)
    return key


def test_every_form_that_sends_carries_a_new_key(client, designer, sandbox_route):
    client.force_login(designer)
    for name in ("studio:request-new", "studio:edit-new", "studio:conversation-new"):
        url = reverse(name)
        assert shown_key(client, url) != shown_key(client, url)


def test_the_composer_sent_twice_makes_one_request(client, designer, sandbox_route):
    client.force_login(designer)
    url = reverse("studio:request-new")
    data = {
        **SETTINGS,
        "route": sandbox_route.pk,
        "prompt": "a lamp",
        "submission_key": shown_key(client, url),
    }

    first = client.post(url, data)
    again = client.post(url, data, follow=True)

    [generation] = GenerationRequest.objects.all()
    assert first.status_code == 302 and first.url == generation.get_absolute_url()
    assert again.redirect_chain[-1][0] == generation.get_absolute_url()
    assert "already sent" in again.content.decode()


def test_a_refused_form_lets_its_key_go_so_the_corrected_form_is_sent(
    client, designer, sandbox_route
):
    client.force_login(designer)
    url = reverse("studio:request-new")
    key = shown_key(client, url)
    refused = client.post(
        url, {**SETTINGS, "route": sandbox_route.pk, "prompt": "", "submission_key": key}
    )
    assert refused.status_code == 200 and not GenerationRequest.objects.exists()
    assert not SubmissionKey.objects.exists()

    sent = client.post(
        url, {**SETTINGS, "route": sandbox_route.pk, "prompt": "a lamp", "submission_key": key}
    )
    assert sent.status_code == 302 and GenerationRequest.objects.count() == 1


def test_a_conversation_started_twice_is_one_conversation(client, designer, live_sandbox):
    client.force_login(designer)
    url = reverse("studio:conversation-new")
    data = {**new_conversation_data(live_sandbox), "submission_key": shown_key(client, url)}

    client.post(url, data)
    client.post(url, data)

    [conversation] = Conversation.objects.all()
    assert conversation.turns.count() == 1


def test_keys_are_the_senders_own(client, designer, other_designer, sandbox_route):
    """Another designer's key (seen in a shared page, say) makes that designer's own request."""
    url = reverse("studio:request-new")
    data = {**SETTINGS, "route": sandbox_route.pk, "prompt": "a lamp", "submission_key": "f" * 32}
    client.force_login(designer)
    client.post(url, data)
    client.force_login(other_designer)
    client.post(url, data)
    assert sorted(GenerationRequest.objects.values_list("created_by__username", flat=True)) == [
        designer.username,
        other_designer.username,
    ]
