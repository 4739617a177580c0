"""The control page in a real headless Chromium (Debian's ``chromium`` and ``chromedriver``,
driven by ``tests/browser.py``) against a real live filter: the selfie model on a looped clip,
the real threads, the control server, and a pyvirtualcam backend registered here that keeps the
latest frame it is sent. What is checked is what a user would see or get: the preview shows,
the backgrounds are listed, a click in the page changes what the virtual camera receives, the
plots fill, and a wrong token gets an error instead of the controls.

One browser and one filter for the module; every wait is bounded only to catch a hang."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from browser import Browser, find_chromium
from fakecam import fake_camera
from media import person_clip_frames, write_clip
from vbg.config import LiveConfig, apply
from vbg.pipeline import LivePipeline

FOUND = find_chromium()
pytestmark = pytest.mark.skipif(isinstance(FOUND, str), reason=str(FOUND))

HANG_S = 90.0  # bounds a hang only: nothing here is a measurement
RED, BLUE = (255, 0, 0), (0, 0, 255)
MAGENTA, YELLOW = (220, 40, 220), (230, 220, 40)
CYAN, ORANGE = (30, 210, 220), (240, 140, 20)


class Filter:
    """The live filter on its own thread, with what the test needs to reach it."""

    def __init__(self, cfg: LiveConfig, camera) -> None:
        self.camera = camera
        self._url = threading.Event()
        self.url = ""
        self.pipeline = LivePipeline(cfg, on_control=self._listening)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-live", daemon=True)
        self.thread.start()

    def _listening(self, server) -> None:
        self.server, self.url = server, server.url
        self._url.set()

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except BaseException as e:  # reported by the test that waits on it
            self.error = e
            self._url.set()

    def wait_url(self) -> str:
        assert self._url.wait(HANG_S), "the control server never started"
        assert self.error is None, self.error
        return self.url

    def frame_after(self, sent: int, condition, what: str):
        """The first frame the virtual camera got after ``sent`` frames that satisfies
        ``condition`` (polled; bounded by HANG_S only)."""
        deadline = threading.Event()
        timer = threading.Timer(HANG_S, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                cam = self.camera.instances[-1] if self.camera.instances else None
                if cam is not None and cam.sent > sent and cam.latest is not None and condition(cam.latest):
                    return cam.latest
                assert self.error is None and self.thread.is_alive(), f"the filter stopped: {self.error}"
                deadline.wait(0.02)
        finally:
            timer.cancel()
        raise AssertionError(f"the virtual camera never got {what}")

    def sent(self) -> int:
        return self.camera.instances[-1].sent if self.camera.instances else 0

    def stop(self) -> None:
        self.pipeline.stop()
        self.thread.join(HANG_S)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("control_page")
    clip = write_clip(tmp / "person.mp4", [f for f, _ in person_clip_frames(40, (180, 320))], fps=30)
    (tmp / "backgrounds").mkdir()
    # a video the user put in the folder: half a second of magenta, half a second of yellow, looped
    write_clip(tmp / "backgrounds" / "disco.mp4",
               [np.full((48, 64, 3), MAGENTA if i < 5 else YELLOW, np.uint8) for i in range(10)], fps=10)
    cfg = apply(LiveConfig(), {
        "source": {"source": str(clip), "loop": True},
        "model": {"model": "selfie"},
        "background": {"color": "blue"},
        "output": {"vcam_backend": "vbg-test-page"},
        "control": {"backgrounds_dir": str(tmp / "backgrounds")},
    })
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp, fake_camera("vbg-test-page", keep="last") as camera:
        mp.setenv("XDG_RUNTIME_DIR", str(tmp))  # the runtime file goes here, not among the user's
        mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp / "hub"))  # RMBG-1.4 not downloaded
        f = Filter(cfg, camera)
        try:
            f.wait_url()
            yield f
        finally:
            f.stop()


@pytest.fixture(scope="module")
def browser():
    b = Browser(*FOUND, width=1100, height=900)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def page(live, browser):
    """The page, opened with the URL the filter announced, once its controls are up."""
    browser.get(live.url)
    browser.wait_for("return !document.getElementById('controls').hidden", timeout=HANG_S)
    return browser


def _corners(rgb: np.ndarray) -> np.ndarray:
    """Mean colour of the four corner patches: background there, the person is in the middle."""
    h, w = rgb.shape[:2]
    ph, pw = max(2, h // 10), max(2, w // 12)
    patches = [rgb[:ph, :pw], rgb[:ph, -pw:]]
    return np.mean([p.reshape(-1, 3).mean(0) for p in patches], axis=0)


def _is(colour):
    return lambda rgb: np.abs(_corners(rgb) - colour).max() < 40


def test_preview_shows_what_the_camera_sends(page):
    width = page.wait_for("const i = document.getElementById('preview'); return i.complete && i.naturalWidth",
                          timeout=HANG_S)
    assert 200 <= width <= 400  # the server's ~320 px preview of the 320x180 output
    assert page.execute("return document.getElementById('error').hidden")


def test_backgrounds_are_listed_with_thumbnails(page):
    labels = page.wait_for("return [...document.querySelectorAll('#thumbs .thumb')].map(b => b.textContent)",
                           timeout=HANG_S)
    assert {"beach", "office", "studio", "living-room", "disco"} <= set(labels)
    # Loaded lazily (a folder of hundreds is not fetched at once): each once scrolled to.
    assert page.execute("return [...document.querySelectorAll('#thumbs img')].every(i => i.loading === 'lazy')")
    loaded = page.wait_for(
        "const im = [...document.querySelectorAll('#thumbs img')];"
        "const waiting = im.find(i => !(i.complete && i.naturalWidth > 0));"
        "if (waiting) { waiting.scrollIntoView({block: 'nearest'}); return 0; } return im.length", timeout=HANG_S)
    assert loaded == len(labels)


def _pick_red(page, live) -> None:
    """Red picked in the page, as the browser's colour dialog does it (the input's value, then
    "change"); back once the camera gets it and the page says so."""
    sent = live.sent()
    page.execute("const c = document.getElementById('color'); c.value = '#ff0000';"
                 "c.dispatchEvent(new Event('change', {bubbles: true}))")
    live.frame_after(sent, _is(RED), "the red background picked in the page")
    page.wait_for("return document.getElementById('current').textContent.includes('#ff0000')", timeout=HANG_S)


def test_colour_picked_in_the_page_reaches_the_camera(page, live):
    live.frame_after(0, _is(BLUE), "the configured blue background")  # the first test here to change it
    _pick_red(page, live)


def test_effect_switch_turns_the_background_off_and_on(page, live):
    _pick_red(page, live)  # a background of its own, whichever tests ran before
    assert page.execute("return document.getElementById('effect').checked")
    sent = live.sent()
    page.click("label.switch:has(#effect)")  # a real click on the switch, as a user does
    room = live.frame_after(sent, lambda rgb: np.abs(_corners(rgb) - RED).max() > 100, "the camera picture itself")
    assert not page.execute("return document.getElementById('effect').checked")
    assert np.abs(_corners(room) - BLUE).max() > 100  # the room, not a background
    sent = live.sent()
    page.click("label.switch:has(#effect)")
    live.frame_after(sent, _is(RED), "the red background back")


def test_thumbnail_click_and_file_upload_reach_the_camera(page, live, tmp_path):
    sent = live.sent()
    page.click("#thumbs .thumb[data-id^='bundled:studio']")
    studio = live.frame_after(sent, lambda rgb: np.abs(_corners(rgb) - RED).max() > 100, "the studio background")
    page.wait_for("return document.querySelector(\".thumb[data-id^='bundled:studio']\").classList.contains('selected')",
                  timeout=HANG_S)
    # A picture the user picks with "Choose file...": uploaded, then the camera shows it.
    picked = tmp_path / "my green wall.png"
    cv2.imwrite(str(picked), np.full((90, 160, 3), (40, 200, 30), np.uint8))  # BGR: a green
    sent = live.sent()
    page.send_file("#file", picked)
    live.frame_after(sent, _is((30, 200, 40)), "the picture chosen in the page")
    assert np.abs(_corners(studio) - (30, 200, 40)).max() > 40
    page.wait_for("return [...document.querySelectorAll('#thumbs .thumb.selected')]"
                  ".some(b => b.textContent.includes('my green wall'))", timeout=HANG_S)


def test_a_video_in_the_backgrounds_folder_plays_when_its_thumbnail_is_clicked(page, live):
    """The folder's video is marked as one in the list (its first frame as the thumbnail, the
    browser loads it with the others), and a click on it makes the camera show it moving."""
    assert page.execute("return document.querySelector(\".thumb[data-id='folder:disco.mp4']\").classList"
                        ".contains('video')")
    sent = live.sent()
    page.click("#thumbs .thumb[data-id='folder:disco.mp4']")
    live.frame_after(sent, _is(MAGENTA), "the video's magenta")
    live.frame_after(live.sent(), _is(YELLOW), "then its yellow")
    live.frame_after(live.sent(), _is(MAGENTA), "and round to magenta again")


def _chosen_and_moving(page, live, picked: Path, first, second, label: str) -> None:
    """``picked`` chosen with "Choose file...": the camera shows ``first``, ``second``, then
    ``first`` again (it moves, in a loop), and its thumbnail is selected and marked a video."""
    sent = live.sent()
    page.send_file("#file", picked)
    for colour, what in ((first, "its first colour"), (second, "then its second"), (first, "and round again")):
        live.frame_after(sent, _is(colour), f"{picked.name}: {what}")
        sent = live.sent()
    page.wait_for("return [...document.querySelectorAll('#thumbs .thumb.selected.video')]"
                  f".some(b => b.textContent.includes({json.dumps(label)}))", timeout=HANG_S)


def _too_big_is_said(page, huge: Path, limit: int, said: str) -> None:
    """A file of ``limit`` + 1 bytes (sparse: no disk used) is not sent (the filter's refusal,
    sent before the body is read, may never reach a browser): the page says ``said`` at once."""
    with open(huge, "wb") as f:
        f.truncate(limit + 1)
    page.send_file("#file", huge)
    page.wait_for("const e = document.getElementById('error');"
                  f"return !e.hidden && e.textContent.startsWith({json.dumps(said)})", timeout=HANG_S)


def test_a_video_chosen_in_the_page_plays_behind_the_person(page, live, tmp_path):
    """A video the user picks with "Choose file..." is sent, listed as a video, and the camera
    shows it moving (the page offered pictures only, and the filter refused a video); one larger
    than an upload may be is pointed to the backgrounds folder."""
    from vbg.control.uploads import MAX_VIDEO_UPLOAD

    picked = write_clip(tmp_path / "my sea.mp4",
                        [np.full((48, 64, 3), CYAN if i < 5 else ORANGE, np.uint8) for i in range(10)], fps=10)
    _chosen_and_moving(page, live, picked, CYAN, ORANGE, "my sea")
    _too_big_is_said(page, tmp_path / "film.mp4", MAX_VIDEO_UPLOAD,
                     "film.mp4 is over the 1024 MB a video upload may be")  # the server's: "the video is 1024 MB"


def test_a_gif_chosen_in_the_page_moves_behind_the_person(page, live, tmp_path):
    """A GIF the user picks is sent as the picture the browser calls it, kept by the filter as the
    video it is, marked so, and shown moving; one over the picture limit too (it was refused); one
    over a video's is pointed to the backgrounds folder. An uploaded GIF stood still on its first
    frame."""
    from media import pad_gif, write_gif
    from vbg.control.uploads import MAX_UPLOAD, MAX_VIDEO_UPLOAD

    red, blue = (255, 0, 0), (0, 0, 255)  # pure: a GIF's palette keeps them
    _chosen_and_moving(page, live, write_gif(tmp_path / "party.gif", [red, blue, blue], [0, 50, 100]), red, blue,
                       "party")
    big = pad_gif(write_gif(tmp_path / "big.gif", [blue, red, red], [0, 50, 100]), MAX_UPLOAD + 1)
    _chosen_and_moving(page, live, big, blue, red, "big")
    _too_big_is_said(page, tmp_path / "huge.gif", MAX_VIDEO_UPLOAD,
                     "huge.gif is over the 1024 MB a moving picture upload may be: put it in the backgrounds "
                     "folder instead")


def test_plots_fill_with_the_status_figures(page):
    captions = page.wait_for(
        "const f = [...document.querySelectorAll('.plot')];"
        "return f.every(p => Number(p.dataset.points) >= 2) && f.map(p => p.querySelector('b').textContent)",
        timeout=HANG_S)
    fps, latency, mask_age, cpu = captions
    assert float(fps) > 0 and latency.endswith(" ms") and mask_age.endswith(" ms") and cpu.endswith(" %")
    # Each canvas has a drawn line: pixels of the accent colour (#5aa9ff) on the dark ground.
    drawn = page.execute(
        "return [...document.querySelectorAll('.plot canvas')].map(c => {"
        "  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "  for (let i = 0; i < d.length; i += 4) if (d[i+2] > 200 && d[i] < 140 && d[i+3] > 200) n++;"
        "  return n; })")
    assert all(n > 0 for n in drawn), drawn


def test_model_menu_switches_the_model_without_stopping_the_camera(page, live):
    options = page.wait_for("return [...document.querySelectorAll('#model option')].map(o => o.value)",
                            timeout=HANG_S)
    assert {"selfie", "selfie-landscape"} <= set(options)
    labels = page.wait_for("const o = document.querySelector(\"#model option[value='rmbg-1.4']\"); "
                           "return o && o.text.includes('(') ? o.text : null", timeout=HANG_S)
    assert labels == "rmbg-1.4 (not downloaded yet)"  # a switch to it would download it first
    assert page.execute("return document.querySelector(\"#model option[value='selfie']\").text") == "selfie"
    assert page.execute("return document.getElementById('model').value") == "selfie"
    page.click("#model option[value='selfie-landscape']")
    page.wait_for("return document.getElementById('summary').textContent.includes('selfie-landscape')",
                  timeout=HANG_S)
    assert live.pipeline.controller.model == "selfie-landscape"
    sent = live.sent()
    live.frame_after(sent + 10, lambda rgb: True, "frames after the switch")
    assert page.execute("return document.getElementById('error').hidden")


class Counted:
    """Counts the calls of one of the filter's controller methods (the server's requests for it)."""

    def __init__(self, owner, name: str) -> None:
        self.owner, self.name, self.real = owner, name, getattr(owner, name)
        self.n = 0
        setattr(owner, name, self)

    def __call__(self, *args, **kw):
        self.n += 1
        return self.real(*args, **kw)

    def undo(self) -> None:
        delattr(self.owner, self.name)  # the class's method again


def _wait(condition, what: str) -> None:
    deadline = threading.Event()
    timer = threading.Timer(HANG_S, deadline.set)
    timer.start()
    try:
        while not condition():
            if deadline.wait(0.02):
                raise AssertionError(f"timed out waiting for {what}")
    finally:
        timer.cancel()


def test_preview_stops_while_the_page_is_hidden(page, live):
    """Another tab in front: the control page's tab is hidden and asks for no preview (its status
    polls go on: the plots keep their minute) until it is in front again."""
    ctl = live.pipeline.controller
    previews, statuses = Counted(ctl, "preview_jpeg"), Counted(ctl, "status")
    try:
        _wait(lambda: previews.n >= 2, "the page's preview requests")
        own = page.tab()
        page.new_tab()
        try:
            hidden_at, status_at = previews.n, statuses.n
            _wait(lambda: statuses.n >= status_at + 3, "the hidden page's status requests")
            # at most the one that was on its way when the tab went to the back
            assert previews.n - hidden_at <= 1
        finally:
            page.close_tab()
            page.switch_to(own)
        shown_at = previews.n
        _wait(lambda: previews.n >= shown_at + 2, "the preview requests once the page is in front again")
    finally:
        previews.undo()
        statuses.undo()


def test_a_wrong_token_shows_an_error_not_the_controls(browser, live):
    base, _, token = live.url.partition("?token=")
    try:
        for url in (f"{base}?token=not-{token}", base):
            browser.get(url)
            text = browser.execute("return document.body.innerText")
            assert "token" in text.lower(), text  # the server's words, naming the fix
            # a page in the control page's style (it was the API's raw JSON), naming both ways in
            assert browser.execute("return document.contentType") == "text/html", text
            assert "vbg ctl page" in text and "printed" in text, text
            assert "earlier run" in text, text  # a bookmark of an old run's address: not only "lacks its token"
            assert browser.execute("return document.getElementById('controls') === null"
                                   " && document.querySelectorAll('input, button, img').length === 0")
    finally:
        browser.get(live.url)  # the module's page again, for whatever runs after



def test_the_one_time_address_a_started_browser_gets_opens_the_working_page(browser, live):
    """``--ui`` and ``vbg ctl page`` hand the browser a one-time address (the token kept off its
    command line): a real browser follows the redirect to the page's address, the page's script
    finds its token there and shows the controls; a reload keeps working; the one-time address
    opened again is a page saying it was for one visit, with no controls."""
    ticket_url = live.server.ticket_url()
    try:
        browser.get(ticket_url)
        browser.wait_for("return !document.getElementById('controls').hidden", timeout=HANG_S)
        assert browser.execute("return location.search") == "?token=" + live.server.token
        browser.execute("location.reload()")
        browser.wait_for("return document.readyState === 'complete' && document.getElementById('controls')"
                         " && !document.getElementById('controls').hidden", timeout=HANG_S)
        browser.get(ticket_url)
        text = browser.execute("return document.body.innerText")
        assert "one visit" in text and "vbg ctl page" in text, text
        assert browser.execute("return document.getElementById('controls') === null")
    finally:
        browser.get(live.url)  # the module's page again, for whatever runs after



# ---------------------------------------------------------------------------- the audit's findings
SOON_S = 15.0  # what the page should do within a few seconds (a bound, not a measurement)
GREEN = (20, 200, 40)


def _fresh(page, live) -> None:
    """The page opened anew, once its controls and first thumbnails are up, the list scrolled to its top."""
    page.get(live.url)
    page.wait_for("return !document.getElementById('controls').hidden && "
                  "document.querySelectorAll('#thumbs .thumb').length > 0", timeout=HANG_S)
    page.execute("document.getElementById('thumbs').scrollTop = 0")


def _solid(path: Path, rgb) -> Path:
    cv2.imwrite(str(path), np.full((90, 160, 3), rgb[::-1], np.uint8))
    return path


def _recent_labels(page) -> list[str]:
    return page.execute("return [...document.querySelectorAll(\"#thumbs .thumb[data-kind='recent']\")]"
                        ".map(b => b.textContent.trim())")


def _thumb(item_id: str, recent: bool = False) -> str:
    return f"#thumbs .thumb[data-id='{item_id}']" + ("[data-kind='recent']" if recent else ":not([data-kind='recent'])")


def _click(page, css: str) -> None:
    page.execute(f"document.querySelector({json.dumps(css)}).click()")


# The middle pixel of the first image that ``arguments[0]`` selects, once loaded (null before).
PIXEL = ("const i = document.querySelector(arguments[0]); if (!i || !i.complete || !i.naturalWidth) return null;"
         "const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;"
         "const g = c.getContext('2d'); g.drawImage(i, 0, 0);"
         "return [...g.getImageData(c.width >> 1, c.height >> 1, 1, 1).data.slice(0, 3)];")


def _until(check, timeout: float = SOON_S, interval: float = 0.1):
    """``check()`` polled until truthy or ``timeout`` (a bound); its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _pick_in_page(page, name: str) -> None:
    """The folder's ``name`` clicked in the "All" part of the list; back once the "Recently used"
    row starts with it."""
    _click(page, _thumb(f"folder:{name}.png"))
    page.wait_for(f"const r = document.querySelector(\"#thumbs .thumb[data-kind='recent']\");"
                  f"return r && r.textContent.trim() === {json.dumps(name)}", timeout=HANG_S)


def test_recently_used_thumbnails_show_the_pictures_they_stand_for(page, live):
    """Each "Recently used" thumbnail shows its own picture: the row's first one was drawn with the
    picture the first place had before (its address named the place, not the picture)."""
    folder = live.pipeline.controller.library.folder
    _solid(folder / "rec-red.png", RED)
    _solid(folder / "rec-green.png", GREEN)
    _fresh(page, live)
    for name, colour in (("rec-red", RED), ("rec-green", GREEN)):
        _pick_in_page(page, name)
        first = "#thumbs .thumb[data-kind='recent'] img"
        got = _until(lambda: (p := page.execute(PIXEL, first)) and np.abs(np.subtract(p, colour)).max() < 40 and p)
        assert got, (name, page.execute(PIXEL, first))


def test_a_stale_list_picks_the_background_that_was_clicked(page, live):
    """A recent thumbnail clicked in a list made before another client's pick puts behind the person
    what it showed, not what now holds its place in the row."""
    ctl = live.pipeline.controller
    folder = ctl.library.folder
    _solid(folder / "rec-red.png", RED)
    _solid(folder / "rec-green.png", GREEN)
    _fresh(page, live)
    _pick_in_page(page, "rec-red")
    _pick_in_page(page, "rec-green")
    page.execute("window.vbgStale = [...document.querySelectorAll(\"#thumbs .thumb[data-kind='recent']\")]"
                 ".find(b => b.textContent.trim() === 'rec-red')")
    ctl.set_background({"id": "folder:disco.mp4"})  # vbg ctl, say: a new first recent one
    page.execute("window.vbgStale.click()")
    _wait(lambda: ctl.background["label"] != "disco", "the page's pick")
    assert ctl.background["label"] == "rec-red", ctl.background


def test_the_list_follows_the_backgrounds_folder(page, live, monkeypatch):
    """A picture put in the folder shows up, one removed goes (clicked meanwhile: the error, then
    the list again), and the thumbnails that did not change are not made again: the list was
    read at start and after a successful pick only."""
    from vbg.control import library as library_module

    folder = live.pipeline.controller.library.folder
    _solid(folder / "old-sky.png", BLUE)
    _fresh(page, live)
    page.wait_for(f"return document.querySelector({json.dumps(_thumb('folder:old-sky.png'))})", timeout=HANG_S)
    made: list[str] = []
    real = library_module.encode_jpeg
    monkeypatch.setattr(library_module, "encode_jpeg", lambda *a, **kw: made.append("made") or real(*a, **kw))
    try:
        _solid(folder / "new-sky.png", CYAN)
        new = _thumb("folder:new-sky.png")
        assert _until(lambda: page.execute(f"return Boolean(document.querySelector({json.dumps(new)}))")), \
            "a picture put in the folder never showed up in the page"
        page.execute(f"document.querySelector({json.dumps(new)}).scrollIntoView({{block: 'nearest'}})")
        page.wait_for(PIXEL.replace("arguments[0]", json.dumps(new + " img")), timeout=HANG_S)
        assert len(made) == 1, made  # the new one's thumbnail only
        page.execute(f"window.vbgGone = document.querySelector({json.dumps(_thumb('folder:old-sky.png'))})")
        (folder / "old-sky.png").unlink()
        page.execute("window.vbgGone.click()")
        page.wait_for("const e = document.getElementById('error');"
                      "return !e.hidden && e.textContent.includes('old-sky')", timeout=HANG_S)
        gone = _until(lambda: page.execute("return !document.querySelector(\"#thumbs .thumb[data-id='folder:old-sky.png']\")"))
        assert gone, "a removed picture stayed in the list (clicked, it failed)"
    finally:
        for name in ("old-sky.png", "new-sky.png"):
            (folder / name).unlink(missing_ok=True)


LONG_ERROR = ("model rmbg-1.4 could not be loaded: the download from huggingface.co failed (HTTPSConnectionPool"
              "(host='huggingface.co', port=443): Max retries exceeded with url: /briaai/RMBG-1.4/resolve/main/onnx/"
              "model.onnx (Caused by NameResolutionError)): connect this machine to the internet, or put the model "
              "in the cache with vbg models fetch rmbg-1.4 on a machine that is, THE-FIX-AT-THE-END")


def test_a_long_error_wraps_whole_and_stays_until_dismissed(page, live):
    """A long error (a failed model switch's, ~300 characters) is shown whole, wrapped, on a phone's
    360 px: it was cut to one line, the fix it names out of sight; and it stays until dismissed
    (an action's error went after 10 s)."""
    ctl = live.pipeline.controller
    _fresh(page, live)
    page.set_window(360, 800)
    # The page's timers of 9 s and more run in 50 ms: "stays" is seen without waiting for it.
    page.execute("window.vbgTimeout = window.setTimeout;"
                 "window.setTimeout = (f, ms, ...a) => window.vbgTimeout(f, ms >= 9000 ? 50 : ms, ...a)")
    try:
        # The errors the page shows, seen as they are shown (a short one goes within 50 ms now).
        page.execute("window.vbgShown = []; const e = document.getElementById('error');"
                     "window.vbgErrors = new MutationObserver(() => { if (!e.hidden) window.vbgShown.push(e.textContent); });"
                     "window.vbgErrors.observe(e, {subtree: true, childList: true, characterData: true, attributes: true})")
        # The shortened timer works: a short error goes by itself.
        ctl.model_error = "model rmbg-1.4 could not be loaded: A-SHORT-ONE"
        page.wait_for("return window.vbgShown.some(t => t.includes('A-SHORT-ONE')) &&"
                      "document.getElementById('error').hidden", timeout=HANG_S)
        ctl.model_error = LONG_ERROR
        page.wait_for("return window.vbgShown.some(t => t.includes('THE-FIX-AT-THE-END'))", timeout=HANG_S)
        assert page.execute("return !document.getElementById('error').hidden"), "the long error went by itself"
        # A timer of the same (shortened) time, started after the long error was shown, has run: one
        # the long error started would have run before it (timers of no longer delay run in order).
        page.execute("window.vbgMark = false; window.setTimeout(() => { window.vbgMark = true; }, 10000)")
        whole = page.execute(
            "const e = document.getElementById('error'); const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);"
            "let t; while ((t = w.nextNode()) && !t.data.includes('THE-FIX')) {}"
            "const r = document.createRange(); r.setStart(t, t.length - 1); r.setEnd(t, t.length);"
            "const a = r.getBoundingClientRect(), b = e.getBoundingClientRect();"
            "return {fits: e.scrollWidth <= e.clientWidth && a.width > 0 && a.right <= b.right && a.bottom <= b.bottom"
            "        && b.right <= document.documentElement.clientWidth, lines: b.height / parseFloat(getComputedStyle(e).lineHeight)}")
        assert whole["fits"] and whole["lines"] > 3, whole
        page.wait_for("return window.vbgMark", timeout=HANG_S)
        assert page.execute("const e = document.getElementById('error');"
                            "return !e.hidden && e.textContent.includes('THE-FIX-AT-THE-END')"), \
            "the long error went by itself"
        page.click("#error button")
        page.wait_for("return document.getElementById('error').hidden", timeout=HANG_S)
    finally:
        ctl.model_error = None
        page.execute("if (window.vbgTimeout) window.setTimeout = window.vbgTimeout;"
                     "if (window.vbgErrors) window.vbgErrors.disconnect()")
        page.set_window(1100, 900)


def test_the_blur_slider_covers_the_api_range_and_shows_the_server_value(page, live):
    """The slider spans the strengths the API takes (0.1-5) and shows the one set elsewhere: after
    vbg ctl blur 3 it sat at the far right (0..1) and one step left sent 0.95."""
    from vbg.ranges import BLUR

    ctl = live.pipeline.controller
    _fresh(page, live)
    assert page.execute("const b = document.getElementById('blur'); return [Number(b.min), Number(b.max)]") \
        == [BLUR.lo, BLUR.hi]
    ctl.set_background({"blur": 3.0})  # as vbg ctl blur 3 does
    page.wait_for("return document.getElementById('blur').value === '3' && "
                  "document.getElementById('blur-value').textContent === '3.00'", timeout=HANG_S)
    page.execute("document.getElementById('blur').focus()")
    page.press("ArrowLeft")
    _wait(lambda: abs((getattr(ctl.state.view.background, "strength", 0) or 0) - 2.95) < 1e-6,
          "one step left of 3: 2.95")


def test_thumbnails_are_buttons_that_say_which_background_is_on(page, live):
    """A screen reader is told each thumbnail is a button, pressed for the background on, in valid
    list markup: they were list items (aria-pressed lost) in a list that held headings too."""
    _fresh(page, live)
    studio = next(i["id"] for i in live.pipeline.controller.library.items() if i["id"].startswith("bundled:studio"))
    _click(page, _thumb(studio))
    page.wait_for(f"return document.querySelector({json.dumps(_thumb(studio))}).getAttribute('aria-pressed') === 'true'",
                  timeout=HANG_S)
    assert page.role(_thumb(studio)) == "button"
    assert page.role("#thumbs .thumb[data-kind='recent']") == "button"
    markup = page.execute(
        "const t = [...document.querySelectorAll('#thumbs .thumb')];"
        "const lists = [...document.querySelectorAll('#thumbs [role=list], #thumbs ul, #thumbs ol')];"
        "return {pressed: t.filter(b => b.getAttribute('aria-pressed') === 'true').map(b => b.dataset.id),"
        "        unsaid: t.filter(b => !['true', 'false'].includes(b.getAttribute('aria-pressed'))).length,"
        "        roles: t.filter(b => b.hasAttribute('role') && b.getAttribute('role') !== 'button').length,"
        "        strays: lists.flatMap(l => [...l.children]).filter(c => c.tagName !== 'LI' && c.getAttribute('role') !== 'listitem').length,"
        "        orphans: [...document.querySelectorAll('#thumbs li')].filter(li => !['UL', 'OL'].includes(li.parentElement.tagName)).length}")
    assert set(markup["pressed"]) == {studio}, markup
    assert markup["unsaid"] == markup["roles"] == markup["strays"] == markup["orphans"] == 0, markup


def test_keyboard_focus_stays_on_the_picked_thumbnail(page, live):
    """A thumbnail picked with the keyboard keeps the focus once the list is made again (it went to
    the page's body: the next Tab started from the top)."""
    ctl = live.pipeline.controller
    _fresh(page, live)
    room = next(i["id"] for i in ctl.library.items() if i["id"].startswith("bundled:living-room"))
    if _recent_labels(page)[:1] == ["living-room"]:
        ctl.set_background({"id": "folder:disco.mp4"})
        _fresh(page, live)
    page.execute(f"document.querySelector({json.dumps(_thumb(room))}).focus()")
    page.press("Enter")
    _wait(lambda: ctl.background["label"] == "living-room", "the keyboard's pick")
    page.wait_for("const r = document.querySelector(\"#thumbs .thumb[data-kind='recent']\");"
                  "return r && r.textContent.trim() === 'living-room'", timeout=HANG_S)
    # The list the page shows is the filter's latest listing: no other remake of it is on its way.
    latest = ctl.backgrounds()["version"]
    page.wait_for(f"return document.getElementById('thumbs').dataset.version === {json.dumps(latest)}",
                  timeout=HANG_S)
    active = page.execute("const a = document.activeElement; return [a.tagName, a.dataset.id || '', a.dataset.kind || '']")
    assert active[0] == "BUTTON" and active[1] == room and active[2] != "recent", active


def test_a_stopped_filter_shows_as_stopped_and_the_page_comes_back_with_it(page, live):
    """When vbg stops answering, the page says so in its header, dims the last frame, empties the
    plots' figures and disables the controls (they all looked alive); when the same filter answers
    again, all is back by itself."""
    _fresh(page, live)
    page.wait_for("return document.getElementById('summary').textContent.includes('fps')", timeout=HANG_S)
    page.execute("window.vbgFetch = window.fetch; window.fetch = () => Promise.reject(new TypeError('Failed to fetch'))")
    try:
        page.wait_for("return document.getElementById('summary').textContent.includes('stopped')", timeout=SOON_S)
        # a poll more: the plots' figures have a gap
        page.wait_for("return document.querySelector(\".plot[data-key='fps'] b\").textContent === '\u2013'",
                      timeout=SOON_S)
        shown = page.execute(
            "const $ = (id) => document.getElementById(id);"
            "return {summary: $('summary').textContent, effect: $('effect').matches(':disabled'),"
            "        blur: $('blur').matches(':disabled'), file: $('file').matches(':disabled'),"
            "        thumbs: [...document.querySelectorAll('#thumbs .thumb')].every(b => b.matches(':disabled')),"
            "        preview: Number(getComputedStyle($('preview')).opacity),"
            "        fps: document.querySelector(\".plot[data-key='fps'] b\").textContent}")
        assert "fps" not in shown["summary"] and "up " not in shown["summary"], shown
        assert shown["effect"] and shown["blur"] and shown["file"] and shown["thumbs"], shown
        assert shown["preview"] < 0.7 and shown["fps"] == "\u2013", shown
    finally:
        page.execute("window.fetch = window.vbgFetch")
    page.wait_for("const $ = (id) => document.getElementById(id);"
                  "return $('summary').textContent.includes('fps') && !$('effect').matches(':disabled') &&"
                  "  Number(getComputedStyle($('preview')).opacity) === 1 && $('error').hidden", timeout=SOON_S)



# The page's status time-out (5 s) shortened to 1 s, so that a test of a slow answer takes no 5 s;
# window.vbgSawStopped: whether the page ever said "stopped" since.
SHORT_STATUS_TIMEOUT = (
    "window.vbgTimeout = window.setTimeout;"
    "window.setTimeout = (f, ms, ...a) => window.vbgTimeout(f, ms === 5000 ? 1000 : ms, ...a);"
    "window.vbgSawStopped = false;"
    "const seen = () => { if (!document.getElementById('stopped').hidden ||"
    "  document.getElementById('summary').textContent.includes('stopped')) window.vbgSawStopped = true; };"
    "window.vbgWatch = new MutationObserver(seen);"
    "window.vbgWatch.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true})")
UNDO_SHORT_STATUS_TIMEOUT = ("if (window.vbgTimeout) window.setTimeout = window.vbgTimeout;"
                             "if (window.vbgWatch) window.vbgWatch.disconnect()")


class Held:
    """A controller method whose first ``n`` calls (a server request each) wait until ``release()``."""

    def __init__(self, owner, name: str, n: int = 1) -> None:
        self.owner, self.name, self.real = owner, name, getattr(owner, name)
        self.n, self.calls = n, 0
        self._go = threading.Event()
        setattr(owner, name, self)

    def __call__(self, *args, **kw):
        self.calls += 1
        if self.calls <= self.n:
            self._go.wait(HANG_S)
        return self.real(*args, **kw)

    def release(self) -> None:
        self._go.set()

    def undo(self) -> None:
        self.release()
        delattr(self.owner, self.name)  # the class's method again


def test_one_slow_status_answer_does_not_show_the_filter_as_stopped(page, live):
    """A status answer later than the time-out once (it waited behind the browser's six connections
    to the filter, a big folder's thumbnails loading, say) is not a stopped filter: the page said
    "stopped" and disabled everything on the first time-out."""
    ctl = live.pipeline.controller
    _fresh(page, live)
    page.wait_for("return document.getElementById('summary').textContent.includes('fps')", timeout=HANG_S)
    page.execute(SHORT_STATUS_TIMEOUT)
    held = Held(ctl, "status")
    try:
        # the held request timed out, the next was asked for and answered, and the one after asked for
        _wait(lambda: held.calls >= 3, "the page's status requests after the one that timed out")
        page.wait_for("return document.getElementById('summary').textContent.includes('fps')", timeout=HANG_S)
        assert not page.execute("return window.vbgSawStopped"), "one slow status answer showed the filter as stopped"
        assert not page.execute("return document.getElementById('effect').matches(':disabled')")
    finally:
        held.undo()
        page.execute(UNDO_SHORT_STATUS_TIMEOUT)


def test_a_filter_that_answers_nothing_shows_as_stopped_and_comes_back(page, live):
    """A filter whose server accepts connections but answers nothing (stopped with SIGSTOP, say:
    no refused connection to tell it) shows as stopped after a few time-outs in a row, and comes
    back by itself once it answers."""
    ctl = live.pipeline.controller
    _fresh(page, live)
    page.wait_for("return document.getElementById('summary').textContent.includes('fps')", timeout=HANG_S)
    page.execute(SHORT_STATUS_TIMEOUT)
    status, preview = Held(ctl, "status", n=1000), Held(ctl, "preview_jpeg", n=1000)
    try:
        page.wait_for("return document.getElementById('summary').textContent.includes('stopped') &&"
                      "document.getElementById('effect').matches(':disabled')", timeout=HANG_S)
        status.release()
        preview.release()
        page.wait_for("const $ = (id) => document.getElementById(id);"
                      "return $('summary').textContent.includes('fps') && !$('effect').matches(':disabled') &&"
                      "  $('stopped').hidden && $('error').hidden", timeout=HANG_S)
    finally:
        status.undo()
        preview.undo()
        page.execute(UNDO_SHORT_STATUS_TIMEOUT)


# The browser's request for the page's icon has completed (its answer, 200 or an error status, is in).
ICON_DONE = ("return performance.getEntriesByType('resource')"
             ".some(e => new URL(e.name).pathname === '/favicon.ico' && e.responseEnd > 0)")


def test_the_page_loads_without_console_errors(live):
    """No failed load in the console: the browser's own request for /favicon.ico got a 403 on every
    load of the page, and of the page that says the token is missing. In a browser of its own: a
    browser asks for a site's icon on its first visit only (it keeps the icon), and the test waits
    until that request has its answer."""
    base = live.url.partition("?")[0]
    with Browser(*FOUND, width=1100, height=900) as fresh:
        fresh.get(live.url)
        fresh.wait_for("const p = document.getElementById('preview'); return p.complete && p.naturalWidth",
                       timeout=HANG_S)
        fresh.wait_for(ICON_DONE, timeout=HANG_S)
        assert fresh.console_errors() == []
        fresh.get(base.replace("127.0.0.1", "localhost"))  # another origin: a first visit again, its icon asked for
        fresh.wait_for(ICON_DONE, timeout=HANG_S)
        errors = fresh.console_errors()
        assert not [e for e in errors if "favicon" in e], errors


def test_the_colour_input_shows_the_current_colour_and_applies_it_again(page, live):
    """The colour well shows the colour behind the person (it stayed at its first value), and the
    shown colour can be put back with one click (picking the same colour sent nothing)."""
    ctl = live.pipeline.controller
    _fresh(page, live)
    ctl.set_background({"color": "#123456"})  # vbg ctl color, say
    page.wait_for("return document.getElementById('color').value === '#123456'", timeout=SOON_S)
    ctl.set_background({"blur": 1.0})
    page.click("#color-apply")
    _wait(lambda: ctl.background["id"] == "color:#123456", "the shown colour applied again")
