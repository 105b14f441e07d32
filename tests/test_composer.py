"""The composer: frames and slots, live preview and estimate, budgets, run again."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from studio.models import Budget, GenerationRequest, Status
from studio.pricing import money

pytestmark = pytest.mark.django_db

HERO_SLOTS = {
    "slot_asset_type": "a landing-page hero image",
    "slot_audience": "home-office workers",
    "slot_subject": "a matte black desk lamp",
    "slot_lighting_background": "soft daylight on pale gray",
    "slot_headline": "LUMA",
}
SETTINGS = {
    "size": "1024x1024",
    "quality": "low",
    "output_format": "png",
    "background": "auto",
    "n": "1",
    "partial_images": "0",
}


@pytest.fixture
def hero(seed_frames):
    return seed_frames["product-hero"]


def compose(client, route, **fields):
    return client.post(reverse("studio:request-new"), {**SETTINGS, "route": route.pk, **fields})


def preview(client, route, **fields):
    return client.post(
        reverse("studio:composer-preview"),
        {**SETTINGS, "route": route.pk, **fields},
        headers={"HX-Request": "true"},
    )


def shown(response, testid: str) -> str:
    match = re.search(
        rf'data-testid="{testid}"[^>]*>(.*?)</(?:dd|p|pre|ul)>', response.content.decode(), re.S
    )
    assert match, f"{testid} not on the page"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


class TestComposerPage:
    def test_a_frame_link_opens_its_slots_with_recommended_settings(
        self, client, designer, hero, sandbox_route
    ):
        client.force_login(designer)
        response = client.get(reverse("studio:request-new"), {"frame": "product-hero"})
        form = response.context["form"]
        assert form.chosen_frame == hero
        assert form["size"].value() == "1536x1024"
        assert form["quality"].value() == "medium"
        assert b'name="slot_audience"' in response.content
        assert b"appears in the image" in response.content
        assert b"Shape, shadows, brand elements, crop" in response.content

    def test_choosing_a_frame_with_htmx_swaps_the_composer_only(
        self, client, designer, hero, sandbox_route
    ):
        client.force_login(designer)
        response = client.get(
            reverse("studio:request-new"), {"frame": hero.pk}, headers={"HX-Request": "true"}
        )
        assert response.status_code == 200
        assert b"<html" not in response.content
        assert b'id="composer"' in response.content
        assert b'name="slot_subject"' in response.content

    def test_submitting_a_frame_stores_frame_version_slots_prompt_and_labels(
        self, client, designer, hero, sandbox_route, django_capture_on_commit_callbacks
    ):
        client.force_login(designer)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = compose(client, sandbox_route, frame=hero.pk, **HERO_SLOTS)
        generation = GenerationRequest.objects.get()
        assert response.url == generation.get_absolute_url()
        assert generation.frame_version == hero.current_version
        assert generation.slot_values["audience"] == "home-office workers"
        assert generation.slot_values["fixed_details"] == ""
        assert generation.prompt.startswith(
            "Create a landing-page hero image for home-office workers."
        )
        assert 'Render the headline "LUMA" exactly as written.' in generation.prompt
        assert generation.expected_text_labels == ["LUMA"]
        assert len(callbacks) == 1

    def test_a_missing_slot_is_a_form_error_naming_it(self, client, designer, hero, sandbox_route):
        client.force_login(designer)
        response = compose(
            client, sandbox_route, frame=hero.pk, **{**HERO_SLOTS, "slot_audience": ""}
        )
        assert response.context["form"].errors["slot_audience"] == [
            "Audience is required by the Product hero frame."
        ]
        assert b"Audience is required by the Product hero frame." in response.content
        assert not GenerationRequest.objects.exists()

    def test_edit_frames_say_they_need_a_source_image(
        self, client, designer, seed_frames, sandbox_route
    ):
        client.force_login(designer)
        edit = seed_frames["targeted-edit"]
        response = compose(
            client,
            sandbox_route,
            frame=edit.pk,
            slot_fixed="the mug",
            slot_region="the table",
            slot_new_detail="marble",
        )
        assert "edits an existing image" in response.context["form"].errors["frame"][0]
        assert not GenerationRequest.objects.exists()

    def test_free_prompt_quotes_become_expected_labels(self, client, designer, sandbox_route):
        client.force_login(designer)
        compose(client, sandbox_route, prompt='Poster with "OPEN DAY" and “Sat 10am”')
        assert GenerationRequest.objects.get().expected_text_labels == ["OPEN DAY", "Sat 10am"]

    def test_a_prompt_over_the_limit_is_refused(self, client, designer, sandbox_route):
        client.force_login(designer)
        response = compose(client, sandbox_route, prompt="x" * 32_001)
        assert "at most 32,000" in response.context["form"].errors["prompt"][0]

    def test_the_preview_button_renders_without_creating(
        self, client, designer, hero, sandbox_route
    ):
        client.force_login(designer)
        response = compose(client, sandbox_route, frame=hero.pk, action="preview", **HERO_SLOTS)
        assert response.status_code == 200
        assert "LUMA" in shown(response, "prompt-preview")
        assert not GenerationRequest.objects.exists()

    def test_partial_previews_are_refused_on_a_route_that_does_not_stream(
        self, client, designer, sandbox_route
    ):
        sandbox_route.supports_streaming = False
        sandbox_route.save()
        client.force_login(designer)
        response = compose(client, sandbox_route, prompt="x", partial_images="2")
        assert "does not stream" in response.context["form"].errors["partial_images"][0]
        assert not GenerationRequest.objects.exists()

    def test_partial_previews_are_accepted_on_a_streaming_route(
        self, client, designer, sandbox_route
    ):
        client.force_login(designer)
        response = compose(client, sandbox_route, prompt="x", partial_images="2")
        assert response.status_code == 302
        assert GenerationRequest.objects.get().partial_images == 2


class TestLivePreview:
    def test_it_shows_the_assembled_prompt_count_and_estimate(
        self, client, designer, hero, sandbox_route
    ):
        client.force_login(designer)
        response = preview(client, sandbox_route, frame=hero.pk, **HERO_SLOTS)
        assert response.status_code == 200
        assert b"<html" not in response.content
        prompt = shown(response, "prompt-preview")
        assert prompt.startswith("Create a landing-page hero image")
        assert shown(response, "char-count") == f"{len(prompt)} / 32,000 characters"
        assert not GenerationRequest.objects.exists()

    def test_it_lists_what_is_still_wrong(self, client, designer, hero, sandbox_route):
        client.force_login(designer)
        response = preview(
            client, sandbox_route, frame=hero.pk, size="custom", width="1000", height="1024"
        )
        problems = shown(response, "problems")
        assert "Audience is required" in problems
        assert "multiples of 16" in problems
        assert 'data-testid="estimate"' not in response.content.decode()

    @pytest.mark.parametrize(
        ("width", "height", "field"),
        [
            ("4096", "1024", "width"),  # longest edge and ratio: the width breaks them
            ("1024", "4096", "height"),
            ("1024", "1000", "height"),  # not a multiple of 16
            ("512", "512", "size"),  # too few pixels: the size as a whole
        ],
    )
    def test_a_refused_size_has_no_estimate_and_its_error_on_the_edge_at_fault(
        self, client, designer, sandbox_route, width, height, field
    ):
        client.force_login(designer)
        response = preview(
            client, sandbox_route, prompt="x", size="custom", width=width, height=height
        )
        form = response.context["form"]
        assert set(form.errors) == {field}
        label = form[field].label
        assert all(p.startswith(f"{label}: ") for p in shown(response, "problems").splitlines())
        assert 'data-testid="estimate"' not in response.content.decode()
        assert b"Choose a valid size" in response.content

    def test_only_designers_may_preview(self, client, reviewer, sandbox_route):
        client.force_login(reviewer)
        assert preview(client, sandbox_route, prompt="x").status_code == 403

    @pytest.mark.parametrize("size", ["1024x1024", "1536x1024", "2048x2048", "custom"])
    @pytest.mark.parametrize("quality", ["low", "medium", "high", "auto"])
    @pytest.mark.parametrize(("n", "partials"), [(1, 0), (3, 2)])
    def test_the_estimate_shown_equals_pricing(
        self, client, designer, sandbox_route, size, quality, n, partials
    ):
        client.force_login(designer)
        prompt = 'A poster that says "HELLO"'
        extra = {"width": "1920", "height": "1088"} if size == "custom" else {}
        response = preview(
            client,
            sandbox_route,
            prompt=prompt,
            size=size,
            quality=quality,
            n=str(n),
            partial_images=str(partials),
            **extra,
        )
        width, height = (1920, 1088) if size == "custom" else map(int, size.split("x"))
        expected = sandbox_route.estimate(
            prompt=prompt, width=width, height=height, quality=quality, n=n, partial_images=partials
        )
        assert shown(response, "total").startswith(f"{money(expected.cost)} for {n} image")
        per_image = shown(response, "per-image")
        assert per_image.startswith(f"{money(expected.cost_per_image)} ·")
        assert f"{expected.tokens_per_image:,} output tokens" in per_image
        assert ("upper bound" in per_image) == (quality == "auto")

    @pytest.mark.parametrize(
        ("size", "quality", "figure"),
        [
            ("1024x1024", "low", "$0.006"),
            ("1024x1024", "medium", "$0.053"),
            ("1024x1024", "high", "$0.211"),
            ("1024x1536", "low", "$0.005"),
            ("1024x1536", "medium", "$0.041"),
            ("1024x1536", "high", "$0.165"),
        ],
    )
    def test_the_seed_cost_figures_appear_for_the_default_frames(
        self, client, designer, hero, sandbox_route, size, quality, figure
    ):
        client.force_login(designer)
        response = preview(
            client, sandbox_route, frame=hero.pk, size=size, quality=quality, **HERO_SLOTS
        )
        # The seeds' calculator rounds to a tenth of a cent; the page shows the money rule's
        # four decimals, which round to the seed figure.
        per_image = shown(response, "per-image")
        assert re.match(r"\$0\.\d{4} ·", per_image), per_image
        assert f"${Decimal(per_image[1:7]).quantize(Decimal('0.001'))}" == figure

    def test_a_per_call_route_shows_its_own_price_only(self, client, designer, provider_route):
        client.force_login(designer)
        response = preview(client, provider_route, prompt="x", n="2", quality="high")
        assert shown(response, "per-image") == "$0.0300 (laozhang.ai flat price per image)"
        assert shown(response, "total").startswith("$0.0600 for 2 images")
        assert b"output tokens" not in response.content


class TestBudgets:
    @pytest.fixture
    def spent(self, designer, provider_route):
        """$0.03 already spent this month on the provider route."""
        return GenerationRequest.objects.create(
            created_by=designer,
            route=provider_route,
            prompt="earlier",
            prompt_sha256="0" * 64,
            width=1024,
            height=1024,
            quality="low",
            output_format="png",
            provider_model="gpt-image-2",
            status=Status.SUCCEEDED,
            cost=Decimal("0.03"),
        )

    def test_a_submission_over_the_user_budget_is_refused_and_nothing_is_queued(
        self, client, designer, provider_route, spent, django_capture_on_commit_callbacks
    ):
        Budget.objects.create(user=designer, monthly_limit=Decimal("0.05"))
        client.force_login(designer)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = compose(client, provider_route, prompt="a poster", n="1")
        assert response.status_code == 200
        message = response.context["form"].non_field_errors()[0]
        assert "spent $0.0300 of $0.05" in message
        assert "estimated at $0.0300" in message
        assert GenerationRequest.objects.count() == 1
        assert callbacks == []

    def test_a_submission_that_fits_goes_through(self, client, designer, provider_route, spent):
        Budget.objects.create(user=designer, monthly_limit=Decimal("0.06"))
        client.force_login(designer)
        compose(client, provider_route, prompt="a poster", n="1")
        assert GenerationRequest.objects.count() == 2

    def test_the_studio_budget_applies_to_everyone(
        self, client, other_designer, provider_route, spent
    ):
        Budget.objects.create(scope=Budget.Scope.GLOBAL, monthly_limit=Decimal("0.04"))
        client.force_login(other_designer)
        response = compose(client, provider_route, prompt="a poster", n="1")
        assert "The studio's monthly budget" in response.context["form"].non_field_errors()[0]
        assert GenerationRequest.objects.count() == 1

    def test_the_sandbox_is_never_counted(self, client, designer, sandbox_route):
        Budget.objects.create(user=designer, monthly_limit=Decimal("0"))
        client.force_login(designer)
        compose(client, sandbox_route, prompt="a poster", quality="high", n="10")
        assert GenerationRequest.objects.count() == 1

    def test_the_preview_shows_what_is_left(self, client, designer, provider_route, spent):
        Budget.objects.create(user=designer, monthly_limit=Decimal("1.00"))
        client.force_login(designer)
        response = preview(client, provider_route, prompt="x")
        assert b"$0.9700 left of $1.00 this month" in response.content


class TestRunAgainAndStartFrom:
    @pytest.fixture
    def original(self, client, designer, hero, sandbox_route, monkeypatch):
        monkeypatch.setattr(GenerationRequest, "enqueue", lambda self: None)
        client.force_login(designer)
        compose(client, sandbox_route, frame=hero.pk, **HERO_SLOTS, quality="high")
        return GenerationRequest.objects.get()

    def test_run_again_makes_a_new_request_with_the_same_everything(self, client, original):
        response = client.post(reverse("studio:request-run-again", args=[original.id]))
        again = GenerationRequest.objects.exclude(pk=original.pk).get()
        assert response.url == again.get_absolute_url()
        for field in ("prompt", "prompt_sha256", "frame_version", "slot_values", "quality", "size"):
            assert getattr(again, field) == getattr(original, field)
        assert again.status == Status.QUEUED

    def test_start_from_copies_frame_slots_and_settings_into_the_composer(
        self, client, original, hero
    ):
        response = client.get(reverse("studio:request-new"), {"from": original.id})
        form = response.context["form"]
        assert form.chosen_frame == hero
        assert form["slot_audience"].value() == "home-office workers"
        assert form["quality"].value() == "high"

    def test_another_designer_cannot_run_or_copy_it(self, client, original, other_designer):
        client.force_login(other_designer)
        assert (
            client.post(reverse("studio:request-run-again", args=[original.id])).status_code == 404
        )
        assert client.get(reverse("studio:request-new"), {"from": original.id}).status_code == 404

    def test_reviewers_cannot_run_again(self, client, original, reviewer):
        client.force_login(reviewer)
        assert (
            client.post(reverse("studio:request-run-again", args=[original.id])).status_code == 403
        )

    def test_run_again_is_post_only(self, client, original):
        assert (
            client.get(reverse("studio:request-run-again", args=[original.id])).status_code == 405
        )
