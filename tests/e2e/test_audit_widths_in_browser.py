"""The audit pages fit the window: at 1280 and 1920 px no table is wider than its card and
the page does not scroll sideways (the attempt ledger shows its main columns, the rest one
click away). Screenshots of each in test-artifacts/."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.e2e.conftest import screenshot
from tests.e2e.test_generate_in_browser import log_in
from tests.test_audit import ledger, openai_route  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PAGES = {
    "audit-dashboard": reverse("audit:dashboard") + "?start=&end=",
    "audit-attempts": reverse("audit:attempts") + "?start=&end=",
    "audit-frames": reverse("audit:frames"),
}

OVERFLOW = """() => {
    const wide = [];
    const page = document.documentElement;
    if (page.scrollWidth > window.innerWidth) wide.push(`page ${page.scrollWidth}px`);
    for (const table of document.querySelectorAll("main table")) {
        const box = table.parentElement;
        if (table.getBoundingClientRect().right > box.getBoundingClientRect().right + 1
            || table.scrollWidth > box.clientWidth + 1)
            wide.push(`${table.className}: ${table.scrollWidth}px in ${box.clientWidth}px`);
    }
    return wide;
}"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_audit_tables_fit_the_window(browser, live_server, admin_user, ledger, width):  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    log_in(page, live_server, "ada", "pw-ada")
    page.wait_for_load_state("networkidle")
    problems = {}
    for name, path in PAGES.items():
        page.goto(live_server.url + path)
        screenshot(page, f"{name}-{width}")
        if found := page.evaluate(OVERFLOW):
            problems[name] = found
    # The ledger's other columns are one click away.
    page.goto(live_server.url + PAGES["audit-attempts"])
    provider = page.locator('[data-testid="attempts"] th', has_text="Provider")
    assert not provider.is_visible()
    page.check('[data-testid="all-columns"]')
    assert provider.is_visible()
    context.close()
    assert problems == {}
