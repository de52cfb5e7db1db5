"""The progress chart: an accessible SVG with the cut-off, the target, which way is better, a caption, and milestone
labels that every renderer draws visibly (rendered to PNG here with resvg and with cairo, and checked by pixel)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from service.progress.chart_svg import MILESTONE
from service.settings import PROJECT_ROOT
from tests.support.factories import create
from tests.support.progress import goal_with_marker, phq9_series, record

SVG = "{http://www.w3.org/2000/svg}"
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
cairosvg = pytest.importorskip("cairosvg")
resvg = pytest.importorskip("resvg_py")
Image = pytest.importorskip("PIL.Image")


def _resvg(svg: str) -> bytes:
    return bytes(resvg.svg_to_bytes(svg_string=svg, font_family="DejaVu Sans", sans_serif_family="DejaVu Sans"))


def _cairo(svg: str) -> bytes:
    return cairosvg.svg2png(bytestring=svg.encode())  # type: ignore[no-any-return]


RENDERERS: dict[str, Callable[[str], bytes]] = {"resvg": _resvg, "cairo": _cairo}


def ink_in_box(png: bytes, box: tuple[float, float, float, float], colour: str, width: int = 640) -> int:
    """Pixels close to ``colour`` inside ``box`` (x, y, w, h in SVG units) of the rendered image."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    scale = image.width / width
    target = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    x, y, w, h = (round(v * scale) for v in box)
    pixels = image.load()
    return sum(1 for i in range(x, x + w) for j in range(y, y + h)
               if sum(abs(a - b) for a, b in zip(pixels[i, j], target, strict=True)) < 120)


def label_boxes(svg: str, css: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    root = ET.fromstring(svg)
    rects = root.findall(f".//{SVG}rect[@class='{css}-bg']")
    texts = root.findall(f".//{SVG}text[@class='{css}']")
    assert len(rects) == len(texts)
    return [(t.text or "", tuple(float(r.get(k)) for k in ("x", "y", "width", "height")))  # type: ignore[misc]
            for r, t in zip(rects, texts, strict=True)]


async def phq9_chart(c) -> tuple[str, str]:
    cid = (await create(c, "clients"))["id"]
    goal, marker = await phq9_series(c, cid, [(18, "2026-09-01T10:00:00Z"), (16, "2026-09-08T10:00:00Z"),
                                              (12, "2026-09-15T10:00:00Z"), (10, "2026-09-22T10:00:00Z"),
                                              (8, "2026-10-03T10:00:00Z")], start_date="2026-09-01")
    await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Rode the bus <alone> & back",
                 status="done", completed_at="2026-09-18T12:00:00Z")
    await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Full week", due_date="2026-09-26")
    r = await c.get(f"/v1/clients/{cid}/progress.svg", params={"marker_id": marker["id"]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    return cid, r.text


async def test_instrument_chart_says_what_it_shows(c):
    cid, svg = await phq9_chart(c)
    root = ET.fromstring(svg)
    assert (root.tag, root.get("role")) == (f"{SVG}svg", "img")
    assert root.find(f"{SVG}title").text == "PHQ-9 depression score over time"
    texts = {t.get("class"): t.text for t in root.iter(f"{SVG}text") if t.get("class")}
    assert texts["caption"] == "Down 10 points since 1 Sep: now below the clinical cut-off."
    assert texts["cut-off-label"] == "clinical cut-off (10)"
    assert "lower is better" in [t.text for t in root.iter(f"{SVG}text")]
    assert texts["y-label"] == "PHQ-9 depression score"
    desc = root.find(f"{SVG}desc").text
    assert "5 measurements" in desc
    assert "Rode the bus <alone> & back" in desc  # escaped in the markup
    assert "Down 10 points since 1 Sep" in desc
    assert len(root.findall(f".//{SVG}circle[@class='point']")) == 5
    assert len(root.findall(f".//{SVG}line[@class='milestone']")) == 2
    assert len(root.findall(f".//{SVG}rect[@class='band']")) == 5
    sizes = [float(t.get("font-size") or root.get("font-size")) for t in root.iter(f"{SVG}text")]
    assert min(sizes) >= 11  # readable: nothing at 9 px
    assert "paint-order" not in svg
    # the range narrows to what was asked; without marker_id, the first goal's marker
    r = await c.get(f"/v1/clients/{cid}/progress.svg", params={"since": "2026-09-07T00:00:00Z",
                                                              "until": "2026-09-23T00:00:00Z"})
    assert len(ET.fromstring(r.text).findall(f".//{SVG}circle[@class='point']")) == 3


@pytest.mark.parametrize("renderer", list(RENDERERS))
async def test_milestone_labels_are_visible_when_rendered(c, renderer):
    _, svg = await phq9_chart(c)
    png = RENDERERS[renderer](svg)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"progress_phq9_{renderer}.png").write_bytes(png)
    boxes = label_boxes(svg, "milestone-label")
    assert [text for text, _ in boxes] == ["Rode the bus <alone> & back", "Full week"]
    for text, box in boxes:
        assert ink_in_box(png, box, MILESTONE) >= 4 * len(text), (renderer, text)
    [(_, cut_off)] = label_boxes(svg, "cut-off-label")
    assert ink_in_box(png, cut_off, "#b71c1c") >= 40


def test_the_pixel_check_sees_a_halo_drawn_over_its_text():
    """The check can fail: a label with a white halo behind it by ``paint-order`` (what cairo does not honour)
    shows its colour in resvg but not in cairo."""
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360"><rect width="640" height="360" '
           f'fill="#ffffff"/><text x="100" y="100" font-size="12" font-family="DejaVu Sans" fill="{MILESTONE}" '
           f'stroke="#ffffff" stroke-width="3" paint-order="stroke">Rode the bus alone</text></svg>')
    box = (98.0, 88.0, 140.0, 17.0)
    assert ink_in_box(_resvg(svg), box, MILESTONE) >= 40
    assert ink_in_box(_cairo(svg), box, MILESTONE) < 10


async def test_custom_marker_chart_with_its_target(c):
    cid = (await create(c, "clients"))["id"]
    goal, marker = await goal_with_marker(c, cid, name="Mornings out by 9am", unit="/wk", min=0, max=7,
                                          goal={"start_date": "2026-10-01"})
    await c.patch(f"/v1/goals/{goal['id']}", json={"target": {"marker_id": marker["id"], "comparator": ">=",
                                                              "value": 3, "period": "P1W"}})
    await record(c, cid, marker, [(v, f"2026-10-{d:02d}T10:00:00Z") for v, d in ((1, 1), (2, 8), (2, 15), (4, 22))])
    await create(c, "milestones", client_id=cid, goal_id=goal["id"], title="Alarm across the room", status="done",
                 completed_at="2026-10-10T08:00:00Z")
    svg = (await c.get(f"/v1/clients/{cid}/progress.svg", params={"marker_id": marker["id"]})).text
    root = ET.fromstring(svg)
    texts = {t.get("class"): t.text for t in root.iter(f"{SVG}text") if t.get("class")}
    assert root.find(f"{SVG}title").text == "Mornings out by 9am (per week) over time"
    assert texts["caption"] == "Up 3 per week since 1 Oct: meets the target (at least 3)."
    assert texts["target-label"] == "target: at least 3 per week"
    assert "higher is better" in [t.text for t in root.iter(f"{SVG}text")]
    assert not root.findall(f".//{SVG}rect[@class='band']")
    for renderer, render in RENDERERS.items():
        png = render(svg)
        (ARTIFACTS / f"progress_custom_{renderer}.png").write_bytes(png)
        for text, box in label_boxes(svg, "milestone-label"):
            assert ink_in_box(png, box, MILESTONE) >= 4 * len(text), (renderer, text)
