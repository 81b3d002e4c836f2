"""One live server and one Chromium for every browser test (they are the slow part)."""

from __future__ import annotations

import pytest

from .support import AXE_RESULTS, CHROMIUM, CHROMIUM_ARGS, LiveServer, Watched, missing


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("browser-instance"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def browser():
    if missing():
        pytest.skip(missing())
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def contexts(browser):
    """Open watched browser contexts (one per staff member or visitor); each is checked when closed."""
    opened: list[Watched] = []

    def make(**options) -> Watched:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        opened.append(Watched(browser, **options))
        return opened[-1]

    yield make
    for w in opened:
        w.close()


@pytest.fixture
def page(contexts, live):
    """A fresh browser profile at laptop size, on an empty queue."""
    live.close_all()
    return contexts().page


def pytest_terminal_summary(terminalreporter):
    """axe-core's findings per page, including the minor ones the tests allow."""
    if not AXE_RESULTS:
        return
    terminalreporter.section("axe-core results (serious or critical fail the test)")
    for name, violations in AXE_RESULTS.items():
        found = "; ".join(f"{v['id']} ({v['impact']}: {', '.join(v['nodes'])})" for v in violations) or "no violations"
        terminalreporter.write_line(f"{name}: {found}")
