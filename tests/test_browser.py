"""The web page in a real browser: headless Chromium (Debian's) driven by Playwright.

The server runs in a thread on a free 127.0.0.1 port with a tiny model trained on the made-up
corpus (with a few sentences more, so that it has all eight GMB types); a second one serves a
model with CoNLL's PER/LOC/ORG/MISC labels, looked at 390 px wide. Every request the page makes to any other host is blocked and counted: the page and
the API docs must work offline. The screenshot goes to $NERBILSTM_SCREENSHOT_DIR (else the
test's tmp_path); its path is printed (pytest -s shows it).

Skips only where no Chromium executable exists (install: .ci/install-browser).
"""

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from servers import live_server
from synthetic import synthetic_sentences

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--no-proxy-server"]  # the server is on 127.0.0.1, whatever proxy the environment names


def _chromium() -> str | None:
    env = os.environ.get("NERBILSTM_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for path in CANDIDATES:
        if Path(path).is_file():
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser_path():
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium executable (looked for $NERBILSTM_CHROMIUM, " + ", ".join(CANDIDATES)
                    + " and chromium on PATH); install it with .ci/install-browser")
    return path


GMB_EXTRA = (["Iranian", "pilgrims", "read", "the", "Koran", "during", "Ramadan", "after", "the", "tsunami", "."],
             ["B-gpe", "O", "O", "O", "B-art", "O", "B-eve", "O", "O", "B-nat", "O"])
CONLL = {"per": "PER", "geo": "LOC", "org": "ORG", "tim": "MISC"}


def _tagger(out, sentences):
    from nerbilstm.config import ModelConfig, TrainConfig
    from nerbilstm.predict import Tagger
    from nerbilstm.train import train

    train(sentences[:-60], sentences[-60:], ModelConfig(hidden_size=16, layers=1),
          TrainConfig(epochs=3, batch_size=16, lr=0.01, seed=13), out, progress=False, plots=False)
    return Tagger.load(out)


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser_path):
    """A model with the eight GMB types."""
    from nerbilstm.data.readers import Sentence
    from nerbilstm.serve.app import create_app

    sents = synthetic_sentences(300, seed=1)
    extra = [Sentence(*GMB_EXTRA, line=0) for _ in range(12)]
    sents = sents[:240] + extra + sents[240:]
    with live_server(create_app(_tagger(tmp_path_factory.mktemp("browser") / "model", sents))) as url:
        yield url


@pytest.fixture(scope="module")
def conll_server(tmp_path_factory, browser_path):
    """A model with CoNLL's labels: the made-up corpus with per, geo, org, tim renamed."""
    from nerbilstm.data.readers import Sentence
    from nerbilstm.serve.app import create_app

    sents = [Sentence(s.tokens, [t if t == "O" else t[:2] + CONLL[t[2:]] for t in s.tags], line=s.line)
             for s in synthetic_sentences(300, seed=1)]
    with live_server(create_app(_tagger(tmp_path_factory.mktemp("browser") / "conll", sents))) as url:
        yield url


@pytest.fixture(scope="module")
def browser(browser_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=browser_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _page(browser, server, width=1280, height=860):
    """A fresh page that may only talk to ``server``; other requests are aborted and recorded."""
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = context.new_page()
    page.blocked = []
    page.console_errors = []
    local = urlsplit(server).netloc

    def guard(route):
        url = route.request.url
        if urlsplit(url).netloc == local or url.startswith("data:"):
            route.continue_()
        else:
            page.blocked.append(url)
            route.abort()

    page.route("**/*", guard)
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: page.console_errors.append(str(err)))
    return page


@pytest.fixture
def page(browser, server):
    page = _page(browser, server)
    yield page
    page.context.close()


@pytest.fixture
def phone(browser, conll_server):
    """The CoNLL model's page on a 390 px wide screen."""
    page = _page(browser, conll_server, width=390, height=844)
    yield page
    page.context.close()


def _screenshot_dir(tmp_path) -> Path:
    value = os.environ.get("NERBILSTM_SCREENSHOT_DIR")
    path = Path(value) if value else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def _marks(page):
    return page.eval_on_selector_all(
        "#output mark.ent",
        "els => els.map(e => ({text: e.textContent, label: e.dataset.label, title: e.title, "
        "cls: e.className, bg: getComputedStyle(e).backgroundColor}))")


def _legend(page):
    return page.eval_on_selector_all(
        "#legend li", "els => els.map(e => ({type: e.dataset.type, text: e.textContent, "
        "bg: getComputedStyle(e.querySelector('.swatch')).backgroundColor}))")


GREY = "rgb(233, 236, 239)"  # .ent-other: a type the page has no colour for


def _api_entities(server, text):
    import httpx

    r = httpx.post(server + "/api/tag", json={"text": text}, timeout=30, trust_env=False)
    return r.json()["results"][0]["entities"]


def test_page_highlights_entities(page, server, tmp_path):
    from playwright.sync_api import expect

    page.goto(server + "/")
    page.wait_for_selector("#model-info dt:has-text('Architecture')")
    legend = page.locator("#legend li")
    assert legend.count() == 8
    legend_text = page.inner_text("#legend")
    for name in ("Geographical entity", "Organization", "Person", "Geopolitical entity", "Time indicator",
                 "Artifact", "Event", "Natural phenomenon"):
        assert name in legend_text
    colours = [item["bg"] for item in _legend(page)]
    assert len(set(colours)) == 8 and GREY not in colours

    # Submit with Ctrl+Enter.
    text = "John Smith visited Paris on Monday with NATO. Mary Jones visited New York on Friday."
    page.fill("#text", text)
    page.press("#text", "Control+Enter")
    page.wait_for_selector("#output mark.ent")
    marks = _marks(page)
    api = _api_entities(server, text)
    assert [(m["text"], m["label"]) for m in marks] == [(e["text"], e["label"]) for e in api]
    found = {(m["text"], m["label"]) for m in marks}
    assert {("John Smith", "per"), ("Paris", "geo"), ("Monday", "tim"), ("Mary Jones", "per"),
            ("New York", "geo"), ("Friday", "tim")} <= found
    for m in marks:
        assert "confidence" in m["title"] and "%" in m["title"]
        assert "ent-other" not in m["cls"] and m["bg"] != GREY
    assert page.inner_text("#output").replace("\n", " ").count("John Smith") == 1
    assert page.text_content("#output") == text  # the highlighted text is the text, nothing added
    assert page.locator("#entity-table tbody tr").count() == len(marks)

    # Submit with the button: emoji before the entities must not shift them (UTF-16 vs code points).
    text2 = "Zoë 🙂🙂 agreed. Anna Berg visited Tokyo on Sunday with the World Bank."
    page.fill("#text", text2)
    page.click("#tag-button")
    expect(page.locator("#output")).to_have_text(re.compile("^" + re.escape("Zoë")))
    marks2 = _marks(page)
    api2 = _api_entities(server, text2)
    assert [(m["text"], m["label"]) for m in marks2] == [(e["text"], e["label"]) for e in api2]
    assert ("Tokyo", "geo") in {(m["text"], m["label"]) for m in marks2}
    assert page.text_content("#output") == text2

    # Text that looks like HTML stays text.
    page.fill("#text", "<img src=x onerror=alert(1)> John Smith visited Paris.")
    page.click("#tag-button")
    expect(page.locator("#output")).to_have_text(re.compile("^" + re.escape("<img")))
    assert page.locator("#output img").count() == 0

    # Back to the first text for the screenshot.
    page.fill("#text", text)
    page.press("#text", "Control+Enter")
    expect(page.locator("#output")).to_have_text(re.compile("^" + re.escape("John")))
    page.hover("#output mark.ent >> nth=0")
    shot = _screenshot_dir(tmp_path) / "nerbilstm-serve-page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000

    assert page.blocked == [], f"the page tried to load from elsewhere: {page.blocked}"
    assert page.console_errors == []


def test_empty_text_and_errors_are_shown(page, server):
    page.goto(server + "/")
    page.wait_for_selector("#model-info dt:has-text('Request limit')")
    page.click("#tag-button")
    assert "Type or paste" in page.inner_text("#status")
    page.fill("#text", "word " * 30_000)  # over the 100 KB request limit
    page.click("#tag-button")
    page.wait_for_selector("#status.error")
    assert "too long" in page.inner_text("#status")
    assert page.blocked == []


def test_api_docs_render_offline(page, server, tmp_path):
    page.goto(server + "/docs")
    page.wait_for_selector(".swagger-ui .information-container", timeout=30_000)
    page.wait_for_selector(".opblock-summary-path:has-text('/api/tag')")
    shot = _screenshot_dir(tmp_path) / "nerbilstm-serve-docs.png"
    page.screenshot(path=str(shot))
    print(f"\nscreenshot: {shot}")
    assert page.blocked == [], f"the docs tried to load from elsewhere: {page.blocked}"


def test_page_for_conll_labels_at_phone_width(phone, conll_server, tmp_path):
    """Every type of a non-GMB model coloured, the legend exactly its types, the model's own
    example sentence, and nothing wider than a 390 px screen."""
    import httpx

    from playwright.sync_api import expect

    page = phone
    page.goto(conll_server + "/")
    page.wait_for_selector("#model-info dt:has-text('Architecture')")
    info = httpx.get(conll_server + "/api/model", timeout=30, trust_env=False).json()
    assert info["entity_types"] == ["LOC", "MISC", "ORG", "PER"]
    legend = _legend(page)
    assert [item["type"] for item in legend] == ["LOC", "MISC", "ORG", "PER"]
    assert [item["text"] for item in legend] == ["LOCLocation", "MISCMiscellaneous entity", "ORGOrganization",
                                                 "PERPerson"]
    assert len({item["bg"] for item in legend}) == 4 and GREY not in {item["bg"] for item in legend}
    assert "GMB" not in page.inner_text("body") and "Gordon Brown" not in page.get_attribute("#text", "placeholder")

    page.click("#example-button")
    assert page.input_value("#text") == info["example"]
    page.wait_for_selector("#output mark.ent")
    expect(page.locator("#output")).to_have_text(info["example"])
    marks = _marks(page)
    assert {m["label"] for m in marks} == {"LOC", "MISC", "ORG", "PER"}  # the example has all four
    swatch = {item["type"]: item["bg"] for item in legend}
    for m in marks:
        assert m["bg"] == swatch[m["label"]] and m["bg"] != GREY
    assert page.locator("#entity-table tbody tr").count() == len(marks)

    page.fill("#text", "Anna Berg visited New York on Sunday with the World Bank and "
                       "Supercalifragilisticexpialidociousandmoreandmorelettersthanfitonaphone.")
    page.click("#tag-button")
    expect(page.locator("#output")).to_have_text(re.compile("^Anna"))
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1] == 390, f"horizontal scroll at 390 px: {width}"
    shot = _screenshot_dir(tmp_path) / "nerbilstm-serve-phone.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    assert page.blocked == [] and page.console_errors == []
