from __future__ import annotations

import hashlib
import math
from decimal import Decimal

import pytest
from django.urls import reverse

from studio.models import Attempt, GenerationRequest, OutputImage, Status

pytestmark = pytest.mark.django_db


def make_request(user, route, **extra) -> GenerationRequest:
    values = {
        "created_by": user,
        "route": route,
        "prompt": 'A poster that says "Hello"',
        "prompt_sha256": hashlib.sha256(b"x").hexdigest(),
        "width": 1024,
        "height": 1024,
        "quality": "low",
        "output_format": "png",
        "provider_model": "gpt-image-2",
        **extra,
    }
    return GenerationRequest.objects.create(**values)


VALID_FORM = {
    "prompt": 'A matte black desk lamp on pale gray, with the label "LUMA"',
    "size": "1024x1024",
    "quality": "low",
    "output_format": "png",
    "background": "auto",
    "n": "1",
}


class TestLoginRequired:
    @pytest.mark.parametrize("name", ["studio:home", "studio:request-list", "studio:request-new"])
    def test_anonymous_users_are_sent_to_log_in(self, client, name):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))

    def test_anonymous_request_detail_and_file_redirect_to_log_in(
        self, client, designer, sandbox_route
    ):
        generation = make_request(designer, sandbox_route)
        response = client.get(generation.get_absolute_url())
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


class TestRequestNew:
    def test_it_shows_the_form_with_the_sandbox_route(self, client, designer, sandbox_route):
        client.force_login(designer)
        response = client.get(reverse("studio:request-new"))
        assert response.status_code == 200
        assert b"sandbox" in response.content
        assert b'name="prompt"' in response.content

    def test_users_without_a_designer_role_cannot_submit(self, client, reviewer, sandbox_route):
        client.force_login(reviewer)
        response = client.post(
            reverse("studio:request-new"), {**VALID_FORM, "route": sandbox_route.pk}
        )
        assert response.status_code == 403
        assert not GenerationRequest.objects.exists()

    def test_it_creates_a_queued_request_and_enqueues_it_after_commit(
        self, client, designer, sandbox_route, django_capture_on_commit_callbacks
    ):
        client.force_login(designer)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = client.post(
                reverse("studio:request-new"), {**VALID_FORM, "route": sandbox_route.pk}
            )
        generation = GenerationRequest.objects.get()
        assert response.status_code == 302
        assert response.url == generation.get_absolute_url()
        assert generation.status == Status.QUEUED
        assert generation.created_by == designer
        assert generation.estimated_output_tokens == 196
        text_tokens = math.ceil(len(VALID_FORM["prompt"]) / 4)
        assert generation.estimated_cost == Decimal(196 * 30 + text_tokens * 5) / 1_000_000
        assert generation.prompt_sha256 == hashlib.sha256(VALID_FORM["prompt"].encode()).hexdigest()
        assert len(callbacks) == 1

    @pytest.mark.parametrize(
        ("changes", "field", "message"),
        [
            ({"size": "custom", "width": "1000", "height": "1024"}, "width", "multiples of 16"),
            ({"size": "custom", "width": "3840", "height": "800"}, "width", "3 times"),
            ({"size": "custom", "width": "512", "height": "512"}, "size", "at least 655,360"),
            ({"output_compression": "80"}, "output_compression", "only to JPEG and WebP"),
            ({"background": "transparent"}, "background", "does not support a transparent"),
            ({"prompt": ""}, "prompt", "Write a prompt, or choose a frame"),
            ({"n": "11"}, "n", "less than or equal to 10"),
        ],
    )
    def test_bad_input_is_a_form_error_naming_the_field_and_rule(
        self, client, designer, sandbox_route, changes, field, message
    ):
        client.force_login(designer)
        response = client.post(
            reverse("studio:request-new"), {**VALID_FORM, "route": sandbox_route.pk, **changes}
        )
        assert response.status_code == 200
        errors = response.context["form"].errors
        assert field in errors
        assert any(message in error for error in errors[field])
        assert message.encode() in response.content
        assert not GenerationRequest.objects.exists()

    def test_a_disabled_route_cannot_be_chosen(
        self, client, designer, sandbox_route, provider_route
    ):
        provider_route.enabled = False
        provider_route.save()
        client.force_login(designer)
        response = client.post(
            reverse("studio:request-new"), {**VALID_FORM, "route": provider_route.pk}
        )
        assert "route" in response.context["form"].errors
        assert not GenerationRequest.objects.exists()

    def test_wrong_method_is_refused(self, client, designer, sandbox_route):
        client.force_login(designer)
        assert client.put(reverse("studio:request-new")).status_code == 405


class TestRequestDetail:
    def test_the_owner_sees_the_request(self, client, designer, sandbox_route):
        generation = make_request(designer, sandbox_route)
        client.force_login(designer)
        response = client.get(generation.get_absolute_url())
        assert response.status_code == 200
        assert str(generation.id).encode() in response.content
        assert b'hx-trigger="every 1s"' in response.content

    def test_another_designers_request_is_404(
        self, client, designer, other_designer, sandbox_route
    ):
        generation = make_request(designer, sandbox_route)
        client.force_login(other_designer)
        assert client.get(generation.get_absolute_url()).status_code == 404

    def test_a_reviewer_may_see_any_request(self, client, designer, reviewer, sandbox_route):
        generation = make_request(designer, sandbox_route)
        client.force_login(reviewer)
        assert client.get(generation.get_absolute_url()).status_code == 200

    def test_the_polling_partial_keeps_polling_while_the_request_runs(
        self, client, designer, sandbox_route
    ):
        generation = make_request(designer, sandbox_route, status=Status.RUNNING)
        client.force_login(designer)
        response = client.get(generation.get_absolute_url(), headers={"HX-Request": "true"})
        assert response.status_code == 200
        assert b'hx-trigger="every 1s"' in response.content
        assert b"<html" not in response.content
        assert b'data-status="running"' in response.content

    def test_the_polling_partial_stops_polling_when_terminal(self, client, designer, sandbox_route):
        generation = make_request(
            designer,
            sandbox_route,
            status=Status.FAILED,
            failure_reason="provider_5xx",
            failure_message="The server had an error.",
        )
        client.force_login(designer)
        response = client.get(generation.get_absolute_url(), headers={"HX-Request": "true"})
        assert response.status_code == 286
        assert b"hx-trigger" not in response.content
        assert b"Provider error (5xx)" in response.content  # the reason in words
        assert b'data-status="failed"' in response.content

    def test_post_is_not_allowed(self, client, designer, sandbox_route):
        generation = make_request(designer, sandbox_route)
        client.force_login(designer)
        assert client.post(generation.get_absolute_url()).status_code == 405


class TestRequestList:
    def test_it_lists_only_my_requests_newest_first_paginated(
        self, client, designer, other_designer, sandbox_route, settings
    ):
        settings.REQUESTS_PER_PAGE = 2
        mine = [make_request(designer, sandbox_route, prompt=f"mine {i}") for i in range(3)]
        theirs = make_request(other_designer, sandbox_route, prompt="theirs")
        client.force_login(designer)
        first = client.get(reverse("studio:request-list"))
        second = client.get(reverse("studio:request-list") + first.context["older_link"])
        assert [r.id for r in first.context["page"]] == [mine[2].id, mine[1].id]
        assert [r.id for r in second.context["page"]] == [mine[0].id]
        assert str(theirs.id).encode() not in first.content + second.content


class TestOutputFile:
    @pytest.fixture
    def output(self, designer, sandbox_route, settings):
        from django.core.files.base import ContentFile

        generation = make_request(designer, sandbox_route, status=Status.SUCCEEDED)
        attempt = Attempt.begin(generation, sandbox_route)
        output = OutputImage(
            request=generation,
            attempt=attempt,
            sha256="0" * 64,
            bytes=4,
            width=1024,
            height=1024,
            format="png",
        )
        output.file.save("00-test.png", ContentFile(b"\x89PNG"), save=False)
        output.save()
        return output

    def test_the_owner_gets_the_file_with_safe_headers(self, client, designer, output):
        client.force_login(designer)
        response = client.get(output.get_absolute_url())
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "private" in response["Cache-Control"]
        assert b"".join(response.streaming_content) == b"\x89PNG"

    def test_another_designer_gets_404(self, client, other_designer, output):
        client.force_login(other_designer)
        assert client.get(output.get_absolute_url()).status_code == 404


def test_healthz_answers_ok(client, db):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.content == b"ok"
