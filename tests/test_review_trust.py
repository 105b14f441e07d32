"""Issue 15: approval over a known-wrong label, four eyes for superusers, humane labels."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.urls import reverse

from review.models import Decision, decide, inspect_text
from tests.test_review import make_output

pytestmark = pytest.mark.django_db


class TestApprovalOverAMismatch:
    def test_approve_over_a_wrong_label_is_refused_naming_it(
        self, reviewer, designer, sandbox_route
    ):
        output = make_output(designer, sandbox_route, labels=("SUMMER SALE", "Today"))
        inspect_text(output, reviewer, "SUMMER SALE", "SUMMEE SALE", "wrong")
        inspect_text(output, reviewer, "Today", "Today", "exact")
        with pytest.raises(ValidationError) as caught:
            decide(output, reviewer, "approved")
        assert '"SUMMER SALE"' in str(caught.value) and "Today" not in str(caught.value)
        assert not Decision.objects.exists()
        output.refresh_from_db()
        assert output.review_status == "awaiting"

    def test_a_missing_label_counts_as_a_mismatch(self, reviewer, designer, sandbox_route):
        output = make_output(designer, sandbox_route, labels=("OPEN DAY",))
        inspect_text(output, reviewer, "OPEN DAY", "", "missing")
        with pytest.raises(ValidationError):
            decide(output, reviewer, "approved", override_reason="   ")

    def test_with_a_reason_the_override_is_recorded(self, reviewer, designer, sandbox_route):
        output = make_output(designer, sandbox_route, labels=("SUMMER SALE",))
        inspect_text(output, reviewer, "SUMMER SALE", "SUMMEE SALE", "wrong")
        decision = decide(output, reviewer, "approved", override_reason="Client accepts it")
        assert decision.over_text_mismatch
        assert decision.mismatched_labels == ["SUMMER SALE"]
        assert decision.override_reason == "Client accepts it"
        assert decision.summary == "Approved over a text mismatch"

    def test_a_corrected_inspection_needs_no_reason(self, reviewer, designer, sandbox_route):
        output = make_output(designer, sandbox_route, labels=("SUMMER SALE",))
        inspect_text(output, reviewer, "SUMMER SALE", "SUMMEE SALE", "wrong")
        inspect_text(output, reviewer, "SUMMER SALE", "SUMMER SALE", "exact")
        decision = decide(output, reviewer, "approved")
        assert not decision.over_text_mismatch and decision.override_reason == ""

    def test_the_pages_show_the_override(
        self, client, reviewer, designer, admin_user, sandbox_route
    ):
        output = make_output(designer, sandbox_route, labels=("SUMMER SALE",))
        inspect_text(output, reviewer, "SUMMER SALE", "SUMMEE SALE", "wrong")
        client.force_login(reviewer)
        page = client.get(reverse("review:output", args=[output.id])).content.decode()
        assert "Override reason" in page and "<q>SUMMER SALE</q>" in page
        refused = client.post(reverse("review:decide", args=[output.id]), {"approve": "1"})
        assert refused.status_code == 200
        assert "&quot;SUMMER SALE&quot; wrong or missing" in refused.content.decode()
        approved = client.post(
            reverse("review:decide", args=[output.id]),
            {"approve": "1", "override_reason": "Typo kept on purpose"},
        )
        assert approved.status_code == 302
        queue = client.get(reverse("review:queue")).content.decode()
        assert "Approved over a text mismatch" in queue and "Typo kept on purpose" in queue

        client.force_login(designer)
        detail = client.get(output.request.get_absolute_url()).content.decode()
        assert "approved over a text mismatch" in detail and "Typo kept on purpose" in detail
        assert "Approved over a text mismatch" in detail

        client.force_login(admin_user)
        audit = client.get(reverse("audit:dashboard")).content.decode()
        assert "Approved over a text mismatch" in audit and "Typo kept on purpose" in audit
        assert str(output.request_id) in audit


class TestFourEyes:
    def test_a_superuser_cannot_approve_their_own_output(
        self, django_user_model, roles, sandbox_route
    ):
        boss = django_user_model.objects.create_superuser("boss", password="x")
        boss.groups.add(roles["reviewer"])
        assert boss.has_perm("review.approve_own_output")  # what let it through before
        output = make_output(boss, sandbox_route, labels=())
        with pytest.raises(PermissionDenied):
            decide(output, boss, "approved")

    def test_a_granted_group_permission_allows_it(self, designer, roles, sandbox_route):
        solo = Group.objects.create(name="solo studio")
        solo.permissions.add(Permission.objects.get(codename="approve_own_output"))
        designer.groups.add(roles["reviewer"], solo)
        output = make_output(designer, sandbox_route, labels=())
        assert decide(output, designer, "approved").verdict == "approved"

    def test_the_seeded_demo_admin_follows_the_rule(self, settings, tmp_path, sandbox_route):
        settings.VAR_DIR = tmp_path
        call_command("seed_studio", "--demo-accounts", stdout=io.StringIO())
        admin = get_user_model().objects.get(username="admin")
        assert admin.is_superuser
        output = make_output(admin, sandbox_route, labels=())
        with pytest.raises(PermissionDenied):
            decide(output, admin, "approved")


class TestHumaneLabels:
    def test_changes_requested_reads_in_sentence_case(
        self, client, reviewer, designer, sandbox_route
    ):
        assert Decision.Verdict.CHANGES_REQUESTED.label == "Changes requested"
        output = make_output(designer, sandbox_route, labels=())
        client.force_login(reviewer)
        response = client.post(
            reverse("review:decide", args=[output.id]),
            {"request_changes": "1", "reason": "Crop tighter"},
            follow=True,
        )
        assert "Changes requested: output of request" in response.content.decode()
        assert "Changes Requested" not in response.content.decode()

    def test_the_frame_filter_shows_frame_names(
        self, client, reviewer, designer, sandbox_route, seed_frames
    ):
        hero = seed_frames["product-hero"]
        make_output(designer, sandbox_route, frame_version=hero.current_version)
        client.force_login(reviewer)
        page = client.get(reverse("review:queue")).content.decode()
        assert f">{hero.name}</a>" in page
        assert ">product-hero</a>" not in page


class TestDriftOnTheReviewPage:
    def test_reviewers_see_the_percentage_heatmap_and_parent(
        self, client, reviewer, designer, sandbox_route
    ):
        parent = make_output(designer, sandbox_route, labels=())
        output = make_output(
            designer, sandbox_route, labels=(), drift_ratio=0.924, drift_flagged=True
        )
        output.request.parent_output = parent
        output.request.save(update_fields=["parent_output"])
        client.force_login(reviewer)
        page = client.get(reverse("review:output", args=[output.id])).content.decode()
        assert 'data-testid="drift-figure">92.4%</strong>' in page
        assert "0.924 of protected pixels" not in page
        assert reverse("studio:output-drift", args=[output.id]) in page
        assert "Compared with the parent" in page
        assert parent.get_absolute_url() in page


class TestQueueForVolume:
    def test_after_a_decision_the_next_output_in_the_filter_opens(
        self, client, reviewer, designer, other_designer, sandbox_route
    ):
        from datetime import timedelta

        first = make_output(designer, sandbox_route, labels=(), age=timedelta(hours=3))
        make_output(other_designer, sandbox_route, labels=(), age=timedelta(hours=2))
        third = make_output(designer, sandbox_route, labels=(), age=timedelta(hours=1))
        client.force_login(reviewer)
        page = client.get(reverse("review:output", args=[first.id]), {"designer": "dana"})
        assert page.context["next_output"] == third  # otto's output is outside the filter
        assert page.context["previous_output"] is None
        assert f'action="{reverse("review:decide", args=[first.id])}?designer=dana"' in (
            page.content.decode()
        )
        response = client.post(
            reverse("review:decide", args=[first.id]) + "?designer=dana", {"approve": "1"}
        )
        assert response.url == reverse("review:output", args=[third.id]) + "?designer=dana"
        last = client.post(
            reverse("review:decide", args=[third.id]) + "?designer=dana", {"approve": "1"}
        )
        assert last.url == reverse("review:queue") + "?designer=dana"

    def test_the_grid_view_keeps_the_filter(self, client, reviewer, designer, sandbox_route):
        output = make_output(designer, sandbox_route, labels=())
        client.force_login(reviewer)
        page = client.get(reverse("review:queue"), {"view": "grid", "designer": "dana"})
        text = page.content.decode()
        assert 'class="queue queue-grid"' in text
        assert f"{reverse('review:output', args=[output.id])}?designer=dana" in text
