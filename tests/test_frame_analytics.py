"""Frame analytics against data counted by hand, in a fixed number of queries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from review.analytics import frame_analytics
from review.models import decide, inspect_text
from studio.models import PromptFrame, Route
from tests.test_review import make_output

pytestmark = pytest.mark.django_db


@pytest.fixture
def gateway(db) -> Route:
    return Route.objects.create(
        name="gateway-real", owner="laozhang.ai", model_map={"gpt-image-2": "gpt-image-2"}
    )


def priced(output, cost: str):
    output.request.cost = Decimal(cost)
    output.request.save(update_fields=["cost"])
    return output


@pytest.fixture
def counted(reviewer, designer, sandbox_route, gateway, seed_frames):
    """Hero v1: 3 outputs; hero v2: 2 outputs; explainer: 1 output. Counted by hand below."""
    hero = seed_frames["product-hero"]
    v1 = hero.current_version
    hero.purpose = hero.purpose + " (revised)"
    hero.save()
    v2 = hero.current_version
    assert v2.number == v1.number + 1

    # v1, a: approved first time, on the real route, $0.20; both labels exact.
    a = priced(make_output(designer, gateway, labels=("SALE", "NOW"), frame_version=v1), "0.20")
    inspect_text(a, reviewer, "SALE", "SALE", "exact")
    inspect_text(a, reviewer, "NOW", "NOW", "exact")
    decide(a, reviewer, "approved")
    # v1, b: changes requested, then approved (not first pass), real route, $0.30; its one
    # label wrong, then corrected to exact (the latest counts).
    b = priced(make_output(designer, gateway, labels=("SALE",), frame_version=v1), "0.30")
    inspect_text(b, reviewer, "SALE", "SALF", "wrong")
    decide(b, reviewer, "changes_requested", "fix the F")
    inspect_text(b, reviewer, "SALE", "SALE", "exact")
    decide(b, reviewer, "approved")
    # v1, c: awaiting, drift flagged, sandbox $0.05.
    priced(
        make_output(designer, sandbox_route, labels=(), frame_version=v1, drift_flagged=True),
        "0.05",
    )
    # v2, d: rejected, sandbox $0.04, label missing.
    d = priced(make_output(designer, sandbox_route, labels=("GO",), frame_version=v2), "0.04")
    inspect_text(d, reviewer, "GO", "", "missing")
    decide(d, reviewer, "rejected", "no text")
    # v2, e: approved first time, sandbox $0.06.
    e = priced(make_output(designer, sandbox_route, labels=(), frame_version=v2), "0.06")
    decide(e, reviewer, "approved")
    # explainer: one output, awaiting.
    explainer = seed_frames["explainer-visual"]
    make_output(designer, sandbox_route, labels=(), frame_version=explainer.current_version)
    return hero, v1, v2


def test_figures_match_the_hand_count(counted):
    _hero, v1, v2 = counted
    rows = {row.key: row for row in frame_analytics()}
    versions = {version.number: f for version, f in rows["product-hero"].versions}
    one, two, total = versions[v1.number], versions[v2.number], rows["product-hero"].total

    assert (one.requests, one.outputs, one.decided) == (3, 3, 2)
    assert (one.first_pass_approved, one.first_decided, one.first_pass_rate) == (1, 2, 50.0)
    assert (one.approved, one.approval_rate) == (2, 100.0)
    assert (one.exact, one.inspected) == (2 + 1, 3)
    assert one.changes_requested == 1 and one.drift_flags == 1
    assert one.real_cost_per_approved == Decimal("0.25")  # (0.20 + 0.30) / 2
    assert one.simulated_cost_per_approved is None  # the sandbox output is not approved

    assert (two.requests, two.outputs, two.decided, two.approved) == (2, 2, 2, 1)
    assert (two.first_pass_rate, two.approval_rate) == (50.0, 50.0)
    assert (two.exact, two.inspected, two.exactness) == (0, 1, 0.0)
    assert two.real_cost_per_approved is None
    assert two.simulated_cost_per_approved == Decimal("0.10")  # (0.04 + 0.06) / 1

    assert (total.requests, total.outputs, total.approved, total.decided) == (5, 5, 3, 4)
    assert total.first_pass_rate == pytest.approx(100 * 2 / 4)
    assert total.exactness == pytest.approx(75.0)
    assert total.real_cost_per_approved == Decimal("0.25")
    assert total.simulated_cost_per_approved == Decimal("0.15")  # 0.05 + 0.04 + 0.06

    explainer = rows["explainer-visual"].total
    assert (explainer.requests, explainer.outputs, explainer.decided) == (1, 1, 0)
    assert explainer.approval_rate is None


def test_a_fixed_number_of_queries(counted, django_assert_num_queries, seed_frames):
    with django_assert_num_queries(5):
        frame_analytics()
    with django_assert_num_queries(5):
        frame_analytics("product-hero")


def test_the_page_is_for_admins_and_linked_from_the_frame_admin(
    client, admin_user, reviewer, counted, django_user_model
):
    hero = counted[0]
    client.force_login(reviewer)
    assert client.get(reverse("audit:frames")).status_code == 403
    client.force_login(admin_user)
    page = client.get(reverse("audit:frames"), {"frame": "product-hero"}).content.decode()
    assert hero.name in page and "50.0%" in page and "$0.2500" in page
    assert 'data-frame="explainer-visual"' not in page
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    admin_page = client.get(reverse("admin:studio_promptframe_changelist")).content.decode()
    assert f"{reverse('audit:frames')}?frame=product-hero" in admin_page
    assert PromptFrame.objects.filter(key="product-hero").exists()
