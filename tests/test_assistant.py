"""Assistant conversations: turns go to the Responses API with the mainline model and the
image_generation tool, follow-ups continue with previous_response_id, and every image is an
OutputImage of its turn with the same ledger as any other request."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html import escape

import openai
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from studio import imagegen, pricing
from studio.models import (
    Attempt,
    Conversation,
    GenerationRequest,
    OutputImage,
    PriceSheet,
    Route,
    Status,
)
from studio.tasks import plan_retry, run_generation
from tests.openapi import assert_matches_schema

pytestmark = pytest.mark.django_db(transaction=True)

FAST = " [sandbox:pace=0]"
SETTINGS = {
    "width": 1024,
    "height": 1024,
    "quality": "low",
    "output_format": "png",
    "partial_images": 0,
}


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch, settings):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
    settings.RETRY_BASE_SECONDS = Decimal("0.001")
    settings.RETRY_MAX_SECONDS = Decimal("0.002")


@pytest.fixture
def sent_bodies(monkeypatch) -> list[dict]:
    """Every JSON body imagegen sends, read off the wire by an httpx hook."""
    bodies: list[dict] = []
    original = imagegen.client_for

    def capture(request) -> None:
        bodies.append(json.loads(request.read()))

    def client_for(route):
        client = original(route)
        return client.with_options(
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [capture]})
        )

    monkeypatch.setattr(imagegen, "client_for", client_for)
    return bodies


def start(designer, route, **settings) -> Conversation:
    return Conversation.objects.create(
        owner=designer, title="Poster", route=route, settings={**SETTINGS, **settings}
    )


def answer(turn: GenerationRequest) -> GenerationRequest:
    run_generation(str(turn.id))
    turn.refresh_from_db()
    return turn


class TestRoute:
    def test_the_assistant_model_defaults_to_a_mainline_model(self, sandbox_route):
        assert sandbox_route.assistant_model == "gpt-5.4"

    @pytest.mark.parametrize("model", ["gpt-image-2", "GPT-Image-1.5", "dall-e-3"])
    def test_an_image_model_is_refused_as_the_assistant_model(self, sandbox_route, model):
        sandbox_route.assistant_model = model
        with pytest.raises(ValidationError) as refusal:
            sandbox_route.full_clean()
        assert "assistant_model" in refusal.value.message_dict


class TestTwoTurns:
    def test_the_second_turn_edits_the_first_image_via_previous_response_id(
        self, live_sandbox, designer, sent_bodies
    ):
        conversation = start(designer, live_sandbox)
        first = answer(conversation.add_turn(designer, 'Draw a poster that says "First"' + FAST))
        assert first.status == Status.SUCCEEDED, first.failure_message
        conversation.refresh_from_db()
        assert first.response_id.startswith("resp_")
        assert conversation.last_response_id == first.response_id

        second = answer(conversation.add_turn(designer, 'Now add "Second"' + FAST))

        assert second.status == Status.SUCCEEDED, second.failure_message
        assert second.previous_response_id == first.response_id
        first_body, second_body = sent_bodies
        for body in sent_bodies:
            assert_matches_schema(body, "CreateResponse")
            assert body["model"] == "gpt-5.4"
            assert body["tools"] == [
                {
                    "type": "image_generation",
                    "model": "gpt-image-2",
                    "size": "1024x1024",
                    "quality": "low",
                    "output_format": "png",
                }
            ]
        assert "previous_response_id" not in first_body
        assert second_body["previous_response_id"] == first.response_id
        [first_image] = first.outputs.filter(kind=OutputImage.Kind.FINAL)
        [second_image] = second.outputs.filter(kind=OutputImage.Kind.FINAL)
        assert second.parent_output == first_image
        assert second_image.sha256 != first_image.sha256
        assert '"Second"' in second.assistant_text
        # The follow-up sent the first image back as input to the image tool.
        [attempt] = second.attempts.all()
        assert attempt.input_image_tokens > 0
        conversation.refresh_from_db()
        assert conversation.last_response_id == second.response_id

    def test_a_turn_records_both_usages_and_leaves_the_mainline_unpriced(
        self, live_sandbox, designer
    ):
        conversation = start(designer, live_sandbox)
        turn = answer(conversation.add_turn(designer, 'Draw "Ledger"' + FAST))

        [attempt] = turn.attempts.all()
        assert attempt.mainline_model == "gpt-5.4"
        assert attempt.model_sent == "gpt-image-2"
        assert attempt.mainline_input_tokens == pricing.estimate_text_tokens('Draw "Ledger"' + FAST)
        assert attempt.mainline_output_tokens > 0
        assert attempt.output_image_tokens == pricing.estimate_output_tokens(1024, 1024, "low")
        assert attempt.image_tool_cost is not None and attempt.image_tool_cost > 0
        # No price sheet for gpt-5.4: the turn's cost is unknown, not 0.
        assert attempt.cost is None
        assert attempt.cost_basis == Attempt.CostBasis.UNPRICED
        assert turn.cost is None
        assert attempt.provider_request_id.startswith("req_")
        assert turn.output_tokens == attempt.output_image_tokens + attempt.mainline_output_tokens

    def test_the_turns_request_page_shows_the_answer_and_both_costs(
        self, client, live_sandbox, designer
    ):
        conversation = start(designer, live_sandbox)
        turn = answer(conversation.add_turn(designer, 'Draw "Page"' + FAST))
        client.force_login(designer)

        body = client.get(turn.get_absolute_url()).content.decode()

        assert escape(turn.assistant_text) in body
        assert turn.response_id in body
        assert "no price sheet for gpt-5.4" in body
        assert "Run again" not in body

    def test_with_a_price_sheet_for_the_mainline_model_the_turn_is_priced(
        self, live_sandbox, designer, price_sheet
    ):
        PriceSheet.objects.create(
            **{
                field.name: getattr(price_sheet, field.name)
                for field in PriceSheet._meta.concrete_fields
                if field.name not in ("id", "model")
            },
            model="gpt-5.4",
        )
        conversation = start(designer, live_sandbox)
        turn = answer(conversation.add_turn(designer, 'Draw "Priced"' + FAST))

        [attempt] = turn.attempts.all()
        assert attempt.cost_basis == Attempt.CostBasis.TOKENS
        assert attempt.cost > attempt.image_tool_cost > 0
        assert turn.cost == attempt.cost

    def test_a_turn_streams_its_previews_into_partial_outputs(self, live_sandbox, designer):
        conversation = start(designer, live_sandbox, partial_images=2)
        turn = answer(conversation.add_turn(designer, 'Draw "Streamed"' + FAST))

        assert turn.status == Status.SUCCEEDED, turn.failure_message
        previews = turn.outputs.filter(kind=OutputImage.Kind.PARTIAL)
        assert [p.index for p in previews] == [0, 1]
        assert turn.outputs.filter(kind=OutputImage.Kind.FINAL).count() == 1
        assert turn.assistant_text.startswith("Here is the image")
        [attempt] = turn.attempts.all()
        assert attempt.output_image_tokens == (
            pricing.estimate_output_tokens(1024, 1024, "low")
            + 2 * pricing.PARTIAL_IMAGE_OUTPUT_TOKENS
        )

    def test_an_error_mid_stream_is_classified_and_the_conversation_does_not_move_on(
        self, live_sandbox, designer
    ):
        conversation = start(designer, live_sandbox, partial_images=1)
        turn = conversation.add_turn(designer, "x" + FAST + " [sandbox:stream-error]")
        for _ in range(5):
            turn = answer(turn)
            if turn.is_terminal:
                break

        assert turn.status == Status.FAILED
        assert {a.retry_reason for a in turn.attempts.all()} == {"provider_5xx"}
        conversation.refresh_from_db()
        assert conversation.last_response_id == ""

    def test_a_follow_up_never_falls_back_to_a_route_that_lacks_its_context(
        self, live_sandbox, designer
    ):
        spare = Route.objects.create(
            name="spare",
            owner="sandbox",
            base_url=live_sandbox.base_url,
            supports_assistant=True,
            timeout_seconds=30,
        )
        Route.objects.filter(pk=live_sandbox.pk).update(fallback=spare)
        live_sandbox.refresh_from_db()
        conversation = start(designer, live_sandbox)
        first = conversation.add_turn(designer, "x" + FAST + " [sandbox:stream-error]")
        first.previous_response_id = "resp_earlier"
        first.save()
        fresh = start(designer, live_sandbox).add_turn(designer, "y" + FAST)
        for turn in (first, fresh):
            attempt = Attempt.begin(turn, live_sandbox)
            attempt.record_failure(
                reason="provider_5xx",
                http_status=500,
                error_code="",
                message="boom",
                provider_request_id="req_1",
                started=0.0,
                ended=1.0,
            )
            error = imagegen.ImageGenError("provider_5xx", "boom", http_status=500)
            plan = plan_retry(turn, attempt, error)
            assert plan is not None
            expected = live_sandbox if turn is first else spare
            assert plan.route == expected

    def test_a_new_turn_waits_for_the_last_answer(self, live_sandbox, designer):
        conversation = start(designer, live_sandbox)
        conversation.add_turn(designer, "one")
        with pytest.raises(ValidationError):
            conversation.add_turn(designer, "two")
        assert conversation.turns.count() == 1

    def test_a_route_without_the_responses_api_is_not_called(self, live_sandbox, designer):
        conversation = start(designer, live_sandbox)
        turn = conversation.add_turn(designer, "x" + FAST)
        Route.objects.filter(pk=live_sandbox.pk).update(supports_assistant=False)

        turn = answer(turn)

        assert turn.status == Status.FAILED
        assert turn.failure_reason == "route_unavailable"
        assert not turn.attempts.exists()


def test_the_sdk_refuses_what_imagegen_never_sends(live_sandbox):
    """The sandbox refuses an image model in `model`: imagegen must send the mainline one."""
    client = imagegen.client_for(live_sandbox)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(
            model="gpt-image-2", input="x", tools=[{"type": "image_generation"}]
        )


def new_conversation_data(route, **extra) -> dict:
    return {
        "title": "Spring poster",
        "route": str(route.pk),
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "partial_images": "0",
        "message": 'Draw a poster that says "Spring"' + FAST,
        **extra,
    }


class TestViews:
    def test_only_routes_that_serve_responses_are_offered(
        self, client, designer, sandbox_route, provider_route
    ):
        client.force_login(designer)
        response = client.get(reverse("studio:conversation-new"))

        offered = list(response.context["form"].fields["route"].queryset)
        assert offered == [sandbox_route]
        assert provider_route.name not in response.content.decode()
        refused = client.post(
            reverse("studio:conversation-new"), new_conversation_data(provider_route)
        )
        assert "route" in refused.context["form"].errors
        assert not Conversation.objects.exists()

    def test_a_designer_starts_a_conversation_and_sees_the_answer(
        self, client, designer, live_sandbox
    ):
        client.force_login(designer)
        response = client.post(
            reverse("studio:conversation-new"), new_conversation_data(live_sandbox)
        )

        conversation = Conversation.objects.get()
        assert response.status_code == 302 and response.url == conversation.get_absolute_url()
        assert conversation.owner == designer and conversation.settings["width"] == 1024
        [turn] = conversation.turns.all()
        assert turn.operation == GenerationRequest.Operation.ASSISTANT
        running = client.get(conversation.get_absolute_url(), headers={"HX-Request": "true"})
        assert running.status_code == 200 and 'hx-trigger="every 1s"' in running.content.decode()

        answer(turn)
        done = client.get(conversation.get_absolute_url(), headers={"HX-Request": "true"})

        assert done.status_code == 286
        body = done.content.decode()
        turn.refresh_from_db()
        assert '"Spring"' in turn.assistant_text
        assert 'data-testid="assistant-text"' in body and escape(turn.assistant_text) in body
        [output] = turn.outputs.all()
        assert output.get_absolute_url() in body
        assert reverse("studio:output-download", args=[output.pk]) in body
        assert "Conversations" in client.get(reverse("studio:conversation-list")).content.decode()

    def test_a_follow_up_is_sent_as_the_next_turn(self, client, designer, live_sandbox):
        conversation = start(designer, live_sandbox)
        first = answer(conversation.add_turn(designer, 'Draw "One"' + FAST))
        client.force_login(designer)

        response = client.post(
            reverse("studio:conversation-turn", args=[conversation.id]),
            {"message": 'Add "Two"' + FAST},
        )

        assert response.status_code == 302
        second = conversation.turns.order_by("-created_at").first()
        assert second.previous_response_id == first.response_id
        waiting = client.post(
            reverse("studio:conversation-turn", args=[conversation.id]), {"message": "Three"}
        )
        assert "Wait for the assistant" in waiting.content.decode()
        assert conversation.turns.count() == 2

    def test_another_designer_gets_404(self, client, designer, other_designer, live_sandbox):
        conversation = start(designer, live_sandbox)
        client.force_login(other_designer)

        assert client.get(conversation.get_absolute_url()).status_code == 404
        turn_url = reverse("studio:conversation-turn", args=[conversation.id])
        assert client.post(turn_url, {"message": "x"}).status_code == 404
        assert not conversation.turns.exists()
        assert (
            Conversation.objects.get()
            not in client.get(reverse("studio:conversation-list")).context["conversations"]
        )

    def test_wrong_methods_are_refused(self, client, designer, live_sandbox):
        conversation = start(designer, live_sandbox)
        client.force_login(designer)
        assert (
            client.get(reverse("studio:conversation-turn", args=[conversation.id])).status_code
            == 405
        )
        assert client.post(conversation.get_absolute_url()).status_code == 405


def test_run_again_on_a_turn_sends_you_back_to_the_conversation(client, designer, live_sandbox):
    conversation = start(designer, live_sandbox)
    turn = answer(conversation.add_turn(designer, 'A poster that says "HELLO"'))
    client.force_login(designer)
    response = client.post(reverse("studio:request-run-again", args=[turn.id]))
    assert response.url == turn.get_absolute_url()
    assert GenerationRequest.objects.count() == 1


def test_a_new_conversation_starts_on_the_sandbox_not_the_first_paid_route(
    client, designer, sandbox_route
):
    """A new-user walk found a paid route whose name sorts first pre-selected, and billed."""
    from studio.models import Route

    Route.objects.create(
        name="aaa-openai",
        owner="openai",
        base_url="https://api.example/v1",
        api_key_env="AAA_KEY",
        supports_assistant=True,
    )
    client.force_login(designer)
    body = client.get(reverse("studio:conversation-new")).content.decode()
    [selected] = re.findall(r'<option value="(\d+)" selected', body)
    assert int(selected) == sandbox_route.pk
