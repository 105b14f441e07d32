"""The expected-label rule: one function, every route to an image, shown before sending."""

from __future__ import annotations

import pytest
from django.urls import reverse

from studio import imagerules
from studio.models import Conversation, GenerationRequest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)


def conversation_for(user, route) -> Conversation:
    return Conversation.objects.create(
        owner=user,
        title="Posters",
        route=route,
        settings={"width": 1024, "height": 1024, "quality": "low", "output_format": "png"},
    )


def test_the_rule_takes_quotes_then_other_labels_once_each():
    labels = imagerules.expected_labels(
        'A poster that says "OPEN DAY" and “Free  entry”', ["OPEN DAY", "Logo  Co", ""]
    )
    assert labels == ["OPEN DAY", "Free entry", "Logo Co"]


def test_a_conversation_turn_records_the_text_it_quotes(designer, sandbox_route):
    conversation = conversation_for(designer, sandbox_route)
    turn = conversation.add_turn(designer, 'Make a poster that says "OPEN DAY"')
    assert turn.expected_text_labels == ["OPEN DAY"]


def test_a_turn_records_labels_added_by_hand(client, designer, sandbox_route):
    conversation = conversation_for(designer, sandbox_route)
    client.force_login(designer)
    response = client.post(
        reverse("studio:conversation-turn", args=[conversation.id]),
        {"message": 'A poster that says "OPEN DAY"', "extra_labels": "Harbour School\n\n"},
    )
    assert response.status_code == 302
    turn = conversation.turns.get()
    assert turn.expected_text_labels == ["OPEN DAY", "Harbour School"]


def test_a_new_conversation_records_its_first_turns_labels(client, designer, sandbox_route):
    client.force_login(designer)
    response = client.post(
        reverse("studio:conversation-new"),
        {
            "title": "Open day",
            "route": sandbox_route.pk,
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "partial_images": 0,
            "message": 'Poster: "OPEN DAY"',
        },
    )
    assert response.status_code == 302
    assert GenerationRequest.objects.get().expected_text_labels == ["OPEN DAY"]


def test_the_turn_form_shows_the_labels_before_sending(client, designer):
    client.force_login(designer)
    response = client.post(
        reverse("studio:turn-labels"),
        {"message": 'A banner "GRAND OPENING"', "extra_labels": "Since 1921"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "<q>GRAND OPENING</q>" in text and "<q>Since 1921</q>" in text


def test_the_composer_previews_and_records_added_labels(client, designer, sandbox_route):
    client.force_login(designer)
    data = {
        "prompt": 'Shop window "SUMMER SALE"',
        "extra_labels": "Harbour Books",
        "route": sandbox_route.pk,
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "background": "auto",
        "n": 1,
    }
    preview = client.post(reverse("studio:composer-preview"), data)
    assert "<q>SUMMER SALE</q>, <q>Harbour Books</q>" in preview.content.decode()
    assert client.post(reverse("studio:request-new"), data).status_code == 302
    assert GenerationRequest.objects.get().expected_text_labels == [
        "SUMMER SALE",
        "Harbour Books",
    ]


def test_a_frame_request_expects_its_text_slots_and_quotes(
    client, designer, sandbox_route, seed_frames
):
    frame = seed_frames["product-hero"]
    text_slots = [slot for slot in frame.current_version.slot_list() if slot.text]
    assert text_slots, "the product-hero frame has a text slot"
    data = {
        "frame": frame.pk,
        "route": sandbox_route.pk,
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "background": "auto",
        "n": 1,
    }
    for slot in frame.current_version.slot_list():
        data[f"slot_{slot.name}"] = "LUMA PRO" if slot.text else (slot.example or "a lamp")
    client.force_login(designer)
    response = client.post(reverse("studio:request-new"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert "LUMA PRO" in GenerationRequest.objects.get().expected_text_labels


def test_submit_applies_the_rule_whatever_the_caller_passes(designer, sandbox_route):
    generation = GenerationRequest.submit(
        created_by=designer,
        route=sandbox_route,
        prompt='Sign that reads "STRIDE"',
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
        expected_text_labels=[],
    )
    assert generation.expected_text_labels == ["STRIDE"]


def test_too_long_a_label_is_a_form_error(client, designer, sandbox_route):
    client.force_login(designer)
    response = client.post(
        reverse("studio:request-new"),
        {
            "prompt": "A quiet beach",
            "extra_labels": "x" * 501,
            "route": sandbox_route.pk,
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "background": "auto",
            "n": 1,
        },
    )
    assert response.status_code == 200
    assert "at most 500 characters" in response.content.decode()
    assert not GenerationRequest.objects.exists()


def test_a_quoted_label_too_long_to_inspect_is_a_form_error(client, designer, sandbox_route):
    client.force_login(designer)
    response = client.post(
        reverse("studio:request-new"),
        {
            "prompt": f'A banner "{"x" * 501}"',
            "route": sandbox_route.pk,
            "size": "1024x1024",
            "quality": "low",
            "output_format": "png",
            "background": "auto",
            "n": 1,
        },
    )
    assert response.status_code == 200
    assert "at most 500 characters" in response.content.decode()
    conversation = conversation_for(designer, sandbox_route)
    turn = client.post(
        reverse("studio:conversation-turn", args=[conversation.id]),
        {"message": f'Poster "{"y" * 501}"'},
    )
    assert turn.status_code == 200 and "at most 500 characters" in turn.content.decode()
    assert not GenerationRequest.objects.exists()
