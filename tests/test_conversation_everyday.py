"""Conversations for everyday use: the title defaults from the first message, and each
message shows its estimate before it is sent (the route's own estimate rule)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from studio.forms import title_from_message
from studio.models import Conversation, GenerationRequest
from studio.pricing import money

pytestmark = pytest.mark.django_db

NEW = {
    "route": "",
    "size": "1024x1024",
    "quality": "low",
    "output_format": "png",
    "partial_images": "0",
    "message": 'Draw a poster that says "Spring"',
}


@pytest.fixture
def no_queue(monkeypatch):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)


def test_the_title_defaults_from_the_first_message(client, designer, sandbox_route, no_queue):
    client.force_login(designer)
    data = {**NEW, "route": sandbox_route.pk, "title": ""}
    response = client.post(reverse("studio:conversation-new"), data)
    conversation = Conversation.objects.get()
    assert response.status_code == 302
    assert conversation.title == 'Draw a poster that says "Spring"'


def test_a_long_first_line_is_cut_at_a_word():
    message = "A very long request for a poster with many words in it, " * 3 + "\nsecond line"
    title = title_from_message(message)
    assert len(title) <= 60 and title.endswith("…") and not title.endswith(" …")
    assert title_from_message("\n\n  Hello  \nthere") == "Hello"


def test_a_given_title_is_kept(client, designer, sandbox_route, no_queue):
    client.force_login(designer)
    client.post(
        reverse("studio:conversation-new"), {**NEW, "route": sandbox_route.pk, "title": "Mine"}
    )
    assert Conversation.objects.get().title == "Mine"


def test_the_new_conversation_shows_the_estimate_as_you_type(client, designer, sandbox_route):
    client.force_login(designer)
    expected = sandbox_route.estimate(prompt=NEW["message"], width=1024, height=1024, quality="low")
    page = client.get(reverse("studio:conversation-new")).content.decode()
    first = sandbox_route.estimate(prompt="", width=1024, height=1024, quality="low").cost
    assert 'data-testid="turn-estimate"' in page and money(first) in page  # before typing
    response = client.post(
        reverse("studio:turn-labels"),
        {**NEW, "route": sandbox_route.pk, "quality": "low"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert money(expected.cost) in html and "simulated" in html
    assert "<q>Spring</q>" in html
    high = client.post(
        reverse("studio:turn-labels"), {**NEW, "route": sandbox_route.pk, "quality": "high"}
    )
    cost = sandbox_route.estimate(
        prompt=NEW["message"], width=1024, height=1024, quality="high"
    ).cost
    assert money(cost) in high.content.decode()


def test_a_running_conversation_estimates_with_its_own_settings(
    client, designer, sandbox_route, no_queue
):
    client.force_login(designer)
    client.post(
        reverse("studio:conversation-new"), {**NEW, "route": sandbox_route.pk, "quality": "medium"}
    )
    conversation = Conversation.objects.get()
    message = "Now make it blue"
    expected = sandbox_route.estimate(prompt=message, width=1024, height=1024, quality="medium")
    response = client.post(
        reverse("studio:turn-labels"),
        {"message": message, "conversation": str(conversation.pk), "quality": "high"},
    )
    assert money(expected.cost) in response.content.decode()
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert 'data-testid="turn-estimate"' in page and 'name="conversation"' in page


def test_someone_elses_conversation_is_a_404_and_junk_is_no_500(
    client, designer, other_designer, sandbox_route, no_queue
):
    client.force_login(designer)
    client.post(reverse("studio:conversation-new"), {**NEW, "route": sandbox_route.pk})
    conversation = Conversation.objects.get()
    client.force_login(other_designer)
    url = reverse("studio:turn-labels")
    assert client.post(url, {"conversation": str(conversation.pk)}).status_code == 404
    assert client.post(url, {"conversation": "not-a-uuid"}).status_code == 404
    junk = {"route": "x", "size": "9x9", "quality": "ultra", "partial_images": "many"}
    response = client.post(url, junk)
    assert response.status_code == 200 and b"Choose a route, size and quality" in response.content


def test_pages_with_keys_list_them(client, designer, sandbox_route):
    client.force_login(designer)
    for name in ("studio:request-new", "studio:edit-new", "studio:conversation-new"):
        page = client.get(reverse(name)).content.decode()
        assert 'id="shortcut-help"' in page and "data-submit-shortcut" in page, name
    edit = client.get(reverse("studio:edit-new")).content.decode()
    assert "Redo" in edit and "<kbd>[</kbd>" in edit
