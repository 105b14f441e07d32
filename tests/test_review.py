"""Review: the queue, claims, append-only decisions, text inspection, permissions."""

from __future__ import annotations

import base64
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from review.models import Decision, ReviewClaim, TextInspection, decide, inspect_text
from review.ocr import diff_segments, suggest
from studio.models import Attempt, GenerationRequest, OutputImage, Status

pytestmark = pytest.mark.django_db


def png_bytes(size=(64, 48), color=(200, 200, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def make_output(
    user, route, labels=("SPRING SALE",), frame_version=None, age=timedelta(0), **extra
) -> OutputImage:
    generation = GenerationRequest.objects.create(
        created_by=user,
        route=route,
        prompt="p",
        prompt_sha256="0" * 64,
        width=64,
        height=48,
        quality="low",
        output_format="png",
        provider_model="gpt-image-2",
        status=Status.SUCCEEDED,
        expected_text_labels=list(labels),
        frame_version=frame_version,
    )
    attempt = Attempt.begin(generation, route)
    output = OutputImage(
        request=generation,
        attempt=attempt,
        sha256="0" * 64,
        bytes=10,
        width=64,
        height=48,
        format="png",
        created_at=timezone.now() - age,
        **extra,
    )
    output.file.save("00.png", ContentFile(png_bytes()), save=False)
    output.save()
    return output


class TestQueue:
    def test_the_queue_costs_the_same_queries_however_many_facets_and_filters(
        self,
        client,
        reviewer,
        designer,
        other_designer,
        sandbox_route,
        seed_frames,
        django_assert_max_num_queries,
    ):
        """Issue 16: eleven facet counts made the queue 3.2 s at a million requests. The
        facets, totals and matching count come from one grouped query; the page from one
        more (plus the session and user)."""
        hero = seed_frames["product-hero"].current_version
        for number in range(6):
            make_output(
                designer if number % 2 else other_designer,
                sandbox_route,
                frame_version=hero if number % 3 else None,
                age=timedelta(hours=number * 10),
                drift_flagged=number == 4,
                text_mismatch=number == 5,
            )
        client.force_login(reviewer)
        for params in ({}, {"designer": "dana", "flagged": "text", "age": "1h"}):
            with django_assert_max_num_queries(8):
                response = client.get(reverse("review:queue"), params)
            assert response.status_code == 200
        assert response.context["matching"] == 1
        assert response.context["total"] == 6

    def test_oldest_first_with_filters_and_counts(
        self, client, reviewer, designer, other_designer, sandbox_route, seed_frames
    ):
        hero = seed_frames["product-hero"].current_version
        old = make_output(designer, sandbox_route, age=timedelta(days=2), frame_version=hero)
        flagged = make_output(
            other_designer,
            sandbox_route,
            age=timedelta(hours=3),
            drift_flagged=True,
            drift_ratio=0.4,
        )
        fresh = make_output(designer, sandbox_route, text_mismatch=True)
        decided = make_output(designer, sandbox_route, review_status="approved")
        client.force_login(reviewer)

        response = client.get(reverse("review:queue"))
        assert [o.id for o in response.context["page"]] == [old.id, flagged.id, fresh.id]
        assert decided.id not in [o.id for o in response.context["page"]]
        assert response.context["total"] == 3
        facets = {
            name: {v: (c, cur) for v, _l, c, cur in opts}
            for name, _t, opts in response.context["facets"]
        }
        assert facets["designer"] == {"dana": (2, False), "otto": (1, False)}
        assert facets["flagged"] == {"drift": (1, False), "text": (1, False), "ocr": (0, False)}
        assert facets["frame"] == {"product-hero": (1, False)}
        assert facets["age"]["1h"][0] == 2 and facets["age"]["24h"][0] == 1

        def ids(**params):
            return [o.id for o in client.get(reverse("review:queue"), params).context["page"]]

        assert ids(designer="otto") == [flagged.id]
        assert ids(flagged="drift") == [flagged.id]
        assert ids(flagged="text") == [fresh.id]
        assert ids(frame="product-hero") == [old.id]
        assert ids(age="24h") == [old.id]
        assert ids(route="sandbox", designer="dana") == [old.id, fresh.id]

    def test_designers_and_outsiders_cannot_reach_the_queue(self, client, designer, outsider):
        for user in (designer, outsider):
            client.force_login(user)
            assert client.get(reverse("review:queue")).status_code == 403
        client.logout()
        assert client.get(reverse("review:queue")).status_code == 302

    def test_reviewers_cannot_see_admin_pages(self, client, reviewer):
        client.force_login(reviewer)
        assert client.get(reverse("audit:dashboard")).status_code == 403
        assert client.get("/admin/").status_code == 302  # to the admin login


class TestClaims:
    def test_opening_an_output_claims_it_and_others_see_who(
        self, client, reviewer, designer, sandbox_route, django_user_model, roles
    ):
        output = make_output(designer, sandbox_route)
        client.force_login(reviewer)
        client.get(reverse("review:output", args=[output.id]))
        claim = ReviewClaim.objects.get(output=output)
        assert claim.reviewer == reviewer and claim.is_active

        second = django_user_model.objects.create_user("ruth", password="x")
        second.groups.add(roles["reviewer"])
        client.force_login(second)
        response = client.get(reverse("review:output", args=[output.id]))
        assert b"Being reviewed by rita" in response.content
        assert ReviewClaim.objects.get(output=output).reviewer == reviewer
        queue = client.get(reverse("review:queue"))
        assert b"being reviewed by rita" in queue.content

    def test_an_expired_claim_passes_to_the_next_reviewer(
        self, reviewer, admin_user, designer, sandbox_route
    ):
        output = make_output(designer, sandbox_route)
        ReviewClaim.objects.create(
            output=output, reviewer=reviewer, expires_at=timezone.now() - timedelta(seconds=1)
        )
        claim = ReviewClaim.take(output, admin_user)
        assert claim.reviewer == admin_user and claim.is_active


class TestDecisions:
    def test_decisions_are_append_only_and_the_latest_counts(
        self, reviewer, designer, sandbox_route
    ):
        output = make_output(designer, sandbox_route, labels=())
        first = decide(output, reviewer, "changes_requested", "Crop tighter")
        second = decide(output, reviewer, "approved")
        output.refresh_from_db()
        assert output.review_status == "approved"
        assert list(output.decisions.all()) == [second, first]
        with pytest.raises(ValidationError):
            first.reason = "rewritten"
            first.save()
        with pytest.raises(ValidationError):
            first.delete()

    @pytest.mark.parametrize("verdict", ["rejected", "changes_requested"])
    def test_a_rejection_or_change_request_needs_a_reason(
        self, reviewer, designer, sandbox_route, verdict
    ):
        output = make_output(designer, sandbox_route, labels=())
        with pytest.raises(ValidationError) as caught:
            decide(output, reviewer, verdict, "  ")
        assert "reason" in caught.value.message_dict
        assert not Decision.objects.exists()

    def test_approval_needs_every_expected_label_inspected(self, reviewer, designer, sandbox_route):
        output = make_output(designer, sandbox_route, labels=("SPRING", "SALE"))
        inspect_text(output, reviewer, "SPRING", "SPRING", "exact")
        with pytest.raises(ValidationError) as caught:
            decide(output, reviewer, "approved")
        assert '"SALE"' in str(caught.value)
        inspect_text(output, reviewer, "SALE", "SALF", "wrong")
        decide(output, reviewer, "approved", override_reason="Fixed in print")
        output.refresh_from_db()
        assert output.review_status == "approved"
        assert output.text_mismatch

    def test_a_designer_cannot_approve_their_own_output_unless_allowed(
        self, designer, roles, sandbox_route
    ):
        designer.groups.add(roles["reviewer"])
        output = make_output(designer, sandbox_route, labels=())
        with pytest.raises(PermissionDenied):
            decide(output, designer, "approved")
        designer.user_permissions.add(Permission.objects.get(codename="approve_own_output"))
        designer = type(designer).objects.get(pk=designer.pk)  # drop the permission cache
        decide(output, designer, "approved")
        assert output.decisions.count() == 1

    def test_the_decide_view_uses_named_buttons_and_shows_errors(
        self, client, reviewer, designer, sandbox_route
    ):
        output = make_output(designer, sandbox_route, labels=())
        client.force_login(reviewer)
        url = reverse("review:decide", args=[output.id])
        response = client.post(url, {"reject": "", "reason": ""})
        assert response.status_code == 200
        assert b"Say why" in response.content
        response = client.post(url, {"reject": "", "reason": "Logo is wrong"})
        assert response.status_code == 302
        output.refresh_from_db()
        assert output.review_status == "rejected"
        assert not ReviewClaim.objects.filter(output=output).exists()
        assert client.get(url).status_code == 405

    def test_a_change_request_can_carry_a_drawn_region_as_a_mask(
        self, client, reviewer, designer, sandbox_route
    ):
        output = make_output(designer, sandbox_route, labels=())
        mask = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
        mask.paste((0, 0, 0, 0), (10, 10, 30, 30))
        buffer = io.BytesIO()
        mask.save(buffer, "PNG")
        region = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        client.force_login(reviewer)
        client.post(
            reverse("review:decide", args=[output.id]),
            {"request_changes": "", "reason": "Fix the corner", "region": region},
        )
        decision = output.decisions.get()
        with decision.region_mask.open("rb") as handle:
            stored = Image.open(handle)
            assert stored.size == (64, 48)
            assert stored.getpixel((15, 15))[3] == 0 and stored.getpixel((50, 40))[3] == 255

    def test_a_region_of_the_wrong_size_is_a_form_error(
        self, client, reviewer, designer, sandbox_route
    ):
        output = make_output(designer, sandbox_route, labels=())
        buffer = io.BytesIO()
        Image.new("RGBA", (10, 10)).save(buffer, "PNG")
        region = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        client.force_login(reviewer)
        response = client.post(
            reverse("review:decide", args=[output.id]),
            {"request_changes": "", "reason": "x", "region": region},
        )
        assert b"The region must be 64x48; it is 10x10." in response.content
        assert not Decision.objects.exists()

    def test_the_designer_sees_the_decision_on_the_request_page(
        self, client, reviewer, designer, sandbox_route
    ):
        output = make_output(designer, sandbox_route, labels=("SALE",))
        inspect_text(output, reviewer, "SALE", "SAIE", "wrong")
        decide(output, reviewer, "rejected", "The headline is misspelt")
        client.force_login(designer)
        page = client.get(output.request.get_absolute_url()).content.decode()
        assert "Rejected" in page and "The headline is misspelt" in page
        assert "SAIE" in page and "Wrong" in page


class TestInspectionView:
    def test_recording_inspections_with_a_typed_label(
        self, client, reviewer, designer, sandbox_route
    ):
        output = make_output(designer, sandbox_route, labels=("OPEN",))
        client.force_login(reviewer)
        response = client.post(
            reverse("review:inspection", args=[output.id]),
            {
                "observed_0": "OPEN",
                "verdict_0": "exact",
                "source_0": "ocr",
                "new_label": "Sat 10am",
                "new_observed": "Sat 1Oam",
                "new_verdict": "wrong",
            },
            headers={"HX-Request": "true"},
        )
        assert response.status_code == 200
        rows = {i.label: (i.observed, i.verdict, i.source) for i in output.inspections.all()}
        assert rows == {
            "OPEN": ("OPEN", "exact", "ocr"),
            "Sat 10am": ("Sat 1Oam", "wrong", "manual"),
        }
        assert TextInspection.objects.filter(request=output.request).count() == 2
        assert b'class="d-missing">0<' in response.content

    def test_exact_must_mean_exact(self, client, reviewer, designer, sandbox_route):
        output = make_output(designer, sandbox_route, labels=("OPEN",))
        client.force_login(reviewer)
        response = client.post(
            reverse("review:inspection", args=[output.id]),
            {"observed_0": "0PEN", "verdict_0": "exact", "source_0": "manual"},
        )
        assert "means the image reads exactly" in response.content.decode()
        assert not output.inspections.exists()

    def test_designers_cannot_inspect(self, client, designer, sandbox_route):
        output = make_output(designer, sandbox_route)
        client.force_login(designer)
        assert client.get(reverse("review:output", args=[output.id])).status_code == 403
        assert client.post(reverse("review:inspection", args=[output.id])).status_code == 403


class TestOcrHelpers:
    def test_suggestions_find_exact_wrong_and_missing_labels(self):
        text = "SPRING SALE\n\nMornlng Ritual\nSANDBOX\n"
        found = {
            s.label: (s.observed, s.verdict)
            for s in suggest(["SPRING SALE", "Morning Ritual", "Free shipping"], text)
        }
        assert found == {
            "SPRING SALE": ("SPRING SALE", "exact"),
            "Morning Ritual": ("Mornlng Ritual", "wrong"),
            "Free shipping": ("", "missing"),
        }

    def test_differences_are_marked_character_by_character(self):
        assert diff_segments("SALE", "SAIE") == [
            ("same", "SA"),
            ("missing", "L"),
            ("extra", "I"),
            ("same", "E"),
        ]


class TestSuggestedEdit:
    def test_the_suggested_edit_opens_the_edit_page_and_bills_nothing_until_submitted(
        self, client, reviewer, designer, other_designer, sandbox_route, seed_frames, monkeypatch
    ):
        from studio.models import InputImage

        monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
        output = make_output(designer, sandbox_route, labels=("SPRING SALE",))
        mask = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
        mask.paste((0, 0, 0, 0), (5, 5, 20, 20))
        buffer = io.BytesIO()
        mask.save(buffer, "PNG")
        decision = decide(
            output,
            reviewer,
            "changes_requested",
            "Make the headline a size up.",
            ContentFile(buffer.getvalue(), name="region.png"),
        )
        url = reverse("studio:suggested-edit", args=[output.request_id, decision.id])

        client.force_login(other_designer)
        assert client.get(url).status_code == 404
        client.force_login(designer)
        page = client.get(output.request.get_absolute_url()).content.decode()
        assert "Open the suggested edit" in page
        assert client.post(url).status_code == 405  # no one-click paid edit any more
        opened = client.get(url, follow=True)
        assert not GenerationRequest.objects.filter(parent_output=output).exists()
        form = opened.context["form"]
        prompt = form.initial["prompt"]
        assert prompt == (
            "In the marked region only: make the headline a size up. Keep everything "
            "outside the marked region exactly as it is."
        )
        assert form.initial["source_output"] == output.pk
        assert form.initial["region_decision"] == decision.pk
        text = opened.content.decode()
        assert 'data-testid="estimate"' in text or "Estimate" in text
        assert "Submit the suggested edit" in text and "Nothing is sent or billed" in text
        region = client.get(
            reverse("studio:suggested-region", args=[output.request_id, decision.id])
        )
        assert region.status_code == 200 and region["Content-Type"] == "image/png"

        response = client.post(
            reverse("studio:edit-new"),
            {
                "source_output": output.pk,
                "region_decision": decision.pk,
                "prompt": prompt,
                "extra_labels": "SPRING SALE",
                "route": sandbox_route.pk,
                "size": "source",
                "quality": "low",
                "output_format": "png",
                "background": "auto",
                "n": 1,
            },
        )
        edit = GenerationRequest.objects.get(parent_output=output)
        assert response.url == edit.get_absolute_url()
        assert edit.operation == "edit" and edit.status == Status.QUEUED
        assert edit.prompt == prompt and edit.expected_text_labels == ["SPRING SALE"]
        roles = dict(edit.inputs.values_list("role", "width"))
        assert roles == {InputImage.Role.SOURCE: 64, InputImage.Role.MASK: 64}
        stored_mask = edit.inputs.get(role="mask")
        with stored_mask.file.open("rb") as handle:
            assert Image.open(handle).getpixel((10, 10))[3] == 0

    def test_another_outputs_region_is_refused(
        self, client, reviewer, designer, sandbox_route, monkeypatch
    ):
        monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
        output = make_output(designer, sandbox_route, labels=())
        other = make_output(designer, sandbox_route, labels=())
        mask = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
        buffer = io.BytesIO()
        mask.save(buffer, "PNG")
        decision = decide(
            other, reviewer, "changes_requested", "x", ContentFile(buffer.getvalue(), "r.png")
        )
        client.force_login(designer)
        response = client.post(
            reverse("studio:edit-new"),
            {
                "source_output": output.pk,
                "region_decision": decision.pk,
                "prompt": "Change it",
                "route": sandbox_route.pk,
                "size": "source",
                "quality": "low",
                "output_format": "png",
                "background": "auto",
                "n": 1,
            },
        )
        assert response.status_code == 200
        assert "reviewer&#x27;s region is not available" in response.content.decode()
        assert not GenerationRequest.objects.filter(parent_output=output).exists()
