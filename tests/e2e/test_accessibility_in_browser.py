"""axe-core in Chromium on the studio's main pages, for each role: no serious or critical
violation. axe is the npm package in node_modules/ (package.json; `make test` installs it),
injected by the test itself, never fetched from a CDN."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from tests.e2e.test_generate_in_browser import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def violations(page) -> list[str]:
    """axe's serious and critical findings on the page as it stands, one line each."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make test` (npm install) puts axe-core there.")
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
            }));
        }"""
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['targets'])}"
        for v in found
        if v["impact"] in BLOCKING
    ]


def pages_for(role: str, objects) -> dict[str, str]:
    request_page = reverse("studio:request-detail", args=[objects["request_id"]])
    everyone = {
        "password change": reverse("password_change"),
        "not found": "/no-such-page/",
    }
    return {**everyone, **role_pages(role, objects, request_page)}


def role_pages(role: str, objects, request_page: str) -> dict[str, str]:
    if role == "designer":
        return {
            "edit an output": reverse("studio:edit-new") + f"?output={objects['output_id']}",
            "search my requests": reverse("studio:request-list") + "?q=zzz&status=failed",
            "composer": reverse("studio:request-new"),
            "edit page": reverse("studio:edit-new"),
            "my requests (grid)": reverse("studio:request-list"),
            "my requests (table)": reverse("studio:request-list") + "?view=table",
            "request page": request_page,
            "conversations": reverse("studio:conversation-list"),
            "new conversation": reverse("studio:conversation-new"),
            "conversation": reverse(
                "studio:conversation-detail", args=[objects["conversation_id"]]
            ),
            "home": reverse("studio:home"),
            "campaigns": reverse("campaigns:list"),
            "new campaign": reverse("campaigns:new"),
            "campaign": reverse("campaigns:detail", args=[objects["campaign_id"]]),
            "API tokens": reverse("api:tokens"),
            "webhooks": reverse("webhooks:list"),
            "webhook": reverse("webhooks:detail", args=[objects["webhook_id"]]),
        }
    if role == "reviewer":
        return {
            "review queue": reverse("review:queue"),
            "review queue (grid)": reverse("review:queue") + "?view=grid",
            "not allowed": reverse("audit:dashboard"),
            "review an output": reverse("review:output", args=[objects["output_id"]]),
            "request page": request_page,
            "a campaign's outputs": reverse("review:queue")
            + f"?campaign={objects['campaign_id']}&view=grid",
        }
    return {
        "audit": reverse("audit:dashboard") + "?start=&end=",
        "attempt list": reverse("audit:attempts") + "?start=&end=",
        "frame analytics": reverse("audit:frames"),
        "composer": reverse("studio:request-new"),
        "everyone's API tokens": reverse("api:token-all"),
        "campaigns": reverse("campaigns:list"),
    }


USERS = {"designer": "dana", "reviewer": "rita", "admin": "ada"}


@pytest.fixture
def page(browser):
    """A page that lets the test inject axe under the studio's script-src 'self' policy
    (the policy itself is unchanged for everyone else)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("role", list(USERS))
def test_main_pages_have_no_serious_or_critical_violations(
    page, live_server, objects, reviewer, admin_user, role
):
    log_in(page, live_server, USERS[role], f"pw-{USERS[role]}")
    page.wait_for_load_state("networkidle")
    problems = {}
    for name, path in pages_for(role, objects).items():
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        found = violations(page)
        if found:
            problems[name] = found
    assert problems == {}, "\n".join(
        f"{n}: {line}" for n, lines in problems.items() for line in lines
    )


def test_the_login_page_has_none_either(page, live_server):
    page.goto(live_server.url + reverse("login"))
    assert violations(page) == []
