"""OCR assist for text inspection, through Debian's tesseract command when it is installed.

One reading is never enough: tesseract's page-segmentation modes suit different layouts (a
sparse poster, a block of copy, a single line), and it reads glyphs best at a few dozen
pixels high, so a large headline may be missed at full size and a footer at half size. The
reader tries several modes and scales, then crops each line it found and reads it alone;
for every expected label it keeps the best reading any pass gave, and it stops as soon as
every label has been read exactly.

The reviewer always confirms: OCR only pre-fills what the image seems to say and suggests
where a reviewer should look first. Without tesseract the inspection form works by hand.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

# Below this similarity an expected label counts as not found in the OCR text.
MATCH_THRESHOLD = 0.6
# 11: sparse text anywhere (posters); 6: one uniform block; 3: automatic page layout.
PAGE_MODES = (11, 6, 3)
# A single line, for the per-line crops.
LINE_MODE = 7
# Long edges to read the whole image at: tesseract reads best with glyphs a few dozen pixels
# high, so large images are read smaller as well (a headline's glyphs shrink into range).
READ_EDGES = (1600, 1000, 640, 2400)
# Crops of single lines are scaled to this height in pixels.
LINE_HEIGHT_PX = 56
LATIN_LANGUAGES = ("eng", "deu", "fra", "spa", "ita", "por")
# The accented letters of each European language tesseract reads here: a label's accents
# pick the few models to load (all six at once read slowly and no better).
LETTERS = {
    "deu": set("äöüß"),
    "fra": set("àâæçéèêëîïôœùûüÿ"),
    "spa": set("áéíñóúü¡¿"),
    "ita": set("àèéìíîòóùú"),
    "por": set("áâãàçéêíóôõú"),
}
# A close-but-different reading given alike by two page modes is taken as what the image
# says (a misspelling), and reading stops; below this similarity it keeps trying.
AGREEMENT_SCORE = 0.75
# Grey levels below (above) which a pixel counts as dark (light) ink in the ink-only passes.
DARK_INK = 110
LIGHT_INK = 150


@dataclass(frozen=True)
class Suggestion:
    label: str
    observed: str
    verdict: str  # exact, wrong or missing
    source: str = "ocr"
    score: float = 0.0


@dataclass
class Reading:
    """What the reader found: the text of every pass, and per label its best suggestion."""

    passes: list[dict] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    languages: str = ""
    seconds: float = 0.0

    @property
    def text(self) -> str:
        """The first pass's text: what the image reads as a whole."""
        return self.passes[0]["text"] if self.passes else ""

    @property
    def suspects_mismatch(self) -> bool:
        return any(s.verdict != "exact" for s in self.suggestions)


def available() -> bool:
    return shutil.which(settings.TESSERACT_CMD) is not None


@functools.cache
def installed_languages() -> frozenset[str]:
    try:
        result = subprocess.run(
            [settings.TESSERACT_CMD, "--list-langs"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return frozenset()
    return frozenset(line.strip() for line in result.stdout.splitlines()[1:] if line.strip())


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    if name.startswith(("HIRAGANA", "KATAKANA")):
        return "kana"
    if name.startswith("CJK"):
        return "han"
    if ord(char) > 127 and char.isalpha():
        return "latin"
    return ""


def languages_for(labels: list[str]) -> str:
    """The tesseract languages that can read these labels, of those installed: kana means
    Japanese, other ideographs Simplified Chinese, accented Latin the European packs."""
    scripts = {_script(char) for label in labels for char in label}
    if "kana" in scripts:
        wanted: tuple[str, ...] = ("jpn", "eng")
    elif "han" in scripts:
        wanted = ("chi_sim", "jpn", "eng")
    elif "latin" in scripts:
        accents = {char for label in labels for char in label.lower() if _script(char)}
        fitting = [language for language, letters in LETTERS.items() if accents <= letters]
        # The label's own language first: listed after English, accents tend to be dropped.
        wanted = (*(fitting[:2] or LATIN_LANGUAGES[1:]), "eng")
    else:
        wanted = ("eng",)
    have = installed_languages()
    chosen = [language for language in wanted if language in have] or ["eng"]
    return "+".join(chosen)


@functools.cache
def _tesseract_slots() -> threading.BoundedSemaphore:
    """How many tesseract processes this worker runs at once (OCR_PROCESSES, default one per
    core): a worker thread pool holds hundreds of calls in flight, and as many OCR passes at
    once would take every core from them. Each process is held to one thread."""
    return threading.BoundedSemaphore(max(1, settings.OCR_PROCESSES))


def _run(image: Image.Image, mode: int, languages: str, tsv: bool = False, timeout=30):
    """One tesseract pass over a grayscale image; None when it fails."""
    with tempfile.NamedTemporaryFile(suffix=".png") as handle:
        image.save(handle, "PNG", compress_level=1)
        handle.flush()
        command = [settings.TESSERACT_CMD, handle.name, "stdout", "--psm", str(mode)]
        command += ["-l", languages]
        if tsv:
            command.append("tsv")
        try:
            with _tesseract_slots():
                result = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=True,
                    env={**os.environ, "OMP_THREAD_LIMIT": "1"},
                )
        except (subprocess.SubprocessError, OSError):
            log.warning("tesseract could not read the image", exc_info=True)
            return None
    return result.stdout


def _scaled(image: Image.Image, long_edge: int) -> Image.Image:
    factor = long_edge / max(image.size)
    if abs(factor - 1) < 0.05:
        return image
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _line_boxes(tsv: str, factor: float) -> list[tuple[int, int, int, int]]:
    """Boxes of the lines tesseract found (in the original image's pixels)."""
    lines: dict[tuple[str, str, str, str], list[int]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5" or not (row.get("text") or "").strip():
            continue
        key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
        left, top = int(row["left"]), int(row["top"])
        right, bottom = left + int(row["width"]), top + int(row["height"])
        box = lines.setdefault(key, [left, top, right, bottom])
        box[:] = [min(box[0], left), min(box[1], top), max(box[2], right), max(box[3], bottom)]
    return [tuple(round(v / factor) for v in box) for box in lines.values()]  # type: ignore[misc]


def _line_crops(image: Image.Image, boxes) -> list[Image.Image]:
    crops = []
    for left, top, right, bottom in boxes:
        height = bottom - top
        if height < 6 or right - left < 6:
            continue
        pad = max(4, height // 2)
        crop = image.crop(
            (
                max(0, left - pad),
                max(0, top - pad),
                min(image.width, right + pad),
                min(image.height, bottom + pad),
            )
        )
        factor = LINE_HEIGHT_PX / height
        crop = crop.resize(
            (max(1, round(crop.width * factor)), max(1, round(crop.height * factor))),
            Image.Resampling.LANCZOS,
        )
        crops.append(ImageOps.expand(crop, border=LINE_HEIGHT_PX // 2, fill=255))
    return crops


def _variant(image: Image.Image, name: str) -> Image.Image:
    """The grayscale image, or only its dark (or light) ink on white: background shapes
    and gradients that make tesseract see no text at all drop out."""
    if name == "dark ink":
        return image.point(lambda value: 0 if value < DARK_INK else 255)
    if name == "light ink":
        return image.point(lambda value: 0 if value > LIGHT_INK else 255)
    return image


def _plan(edges: list[int]) -> list[tuple[str, int, int]]:
    """(variant, long edge, mode) in the order worth trying: cheap and likely first."""
    first = edges[0]
    plan = [("gray", first, 11), ("dark ink", first, 11), ("gray", first, 6), ("gray", first, 3)]
    plan += [("dark ink", first, 3), ("light ink", first, 11)]
    for edge in edges[1:]:
        plan += [("gray", edge, 11), ("dark ink", edge, 11), ("gray", edge, 3)]
        plan += [("dark ink", edge, 6), ("light ink", edge, 11)]
    return plan


def read_labels(image_bytes: bytes, labels: list[str], time_budget: float = 30) -> Reading | None:
    """Read the image in several passes until every label reads exactly (or the passes, or
    the time budget, run out). None when tesseract is absent or the image is unreadable."""
    if not available():
        return None
    try:
        with Image.open(io.BytesIO(image_bytes)) as opened:
            image = ImageOps.exif_transpose(opened).convert("L")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    languages = languages_for(labels)
    reading = Reading(languages=languages)
    started = time.monotonic()
    best: dict[str, Suggestion] = {}
    # For each label, each close but inexact reading and the page modes that gave it.
    agreeing: dict[str, dict[str, set[int]]] = {label: {} for label in labels}

    def settled(label: str) -> bool:
        """Read exactly; or read the same close-but-different way by two page modes (a real
        misspelling reads alike whatever the mode; a misreading of right text seldom does)."""
        suggestion = best[label]
        if suggestion.verdict == "exact":
            return True
        if _unaccented(suggestion.observed) == _unaccented(label):
            return False  # only accents differ: tesseract often drops them, so read on
        modes = agreeing[label].get(suggestion.observed, set())
        return suggestion.score >= AGREEMENT_SCORE and len(modes) >= 2

    def take(name: str, mode: int, text: str | None) -> bool:
        """Keep one pass; True when every label is settled."""
        if text is None:
            return False
        reading.passes.append({"pass": name, "text": text})
        for suggestion in suggest(labels, text):
            held = best.get(suggestion.label)
            if held is None or suggestion.score > held.score:
                best[suggestion.label] = suggestion
            if suggestion.verdict == "wrong":
                agreeing[suggestion.label].setdefault(suggestion.observed, set()).add(mode)
        return all(settled(label) for label in labels)

    edges = _edges(image)
    scaled: dict[tuple[str, int], Image.Image] = {}
    boxes: list[tuple[int, int, int, int]] = []
    for number, (variant, edge, mode) in enumerate(_plan(edges)):
        if time.monotonic() - started > time_budget:
            break
        key = (variant, edge)
        if key not in scaled:
            scaled[key] = _variant(_scaled(image, edge), variant)
        picture = scaled[key]
        if mode == 11 and edge == edges[0] and variant != "light ink":
            # Sparse-text passes at the first size also give the line boxes to crop.
            tsv = _run(picture, mode, languages, tsv=True)
            text = None if tsv is None else _tsv_text(tsv)
            if tsv is not None:
                boxes += _line_boxes(tsv, max(picture.size) / max(image.size))
        else:
            text = _run(picture, mode, languages)
        if take(f"{variant}, psm {mode} at {max(picture.size)} px", mode, text) or not labels:
            break
        if number == 3 and boxes:
            # Each line found, alone and at a comfortable height: per-label crops.
            crops = _line_crops(_variant(image, "dark ink"), _merge(boxes))
            texts = [_run(crop, LINE_MODE, languages) for crop in crops]
            joined = "\n".join(" ".join(t.split()) for t in texts if t and t.strip())
            if take("line crops, psm 7", LINE_MODE, joined):
                break
    reading.suggestions = [best.get(label) or Suggestion(label, "", "missing") for label in labels]
    reading.seconds = time.monotonic() - started
    return reading


def _merge(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Line boxes with near-duplicates (the same line found by two passes) dropped."""
    kept: list[tuple[int, int, int, int]] = []
    for box in boxes:
        if not any(
            abs(box[1] - other[1]) < 8
            and abs(box[3] - other[3]) < 8
            and box[0] < other[2]
            and other[0] < box[2]
            for other in kept
        ):
            kept.append(box)
    return kept


def _edges(image: Image.Image) -> list[int]:
    """The long edges to read at, most useful first, never above the image's own size
    (upscaling a whole image only slows tesseract down)."""
    edges: list[int] = []
    for edge in READ_EDGES:
        edge = min(edge, max(image.size))
        if all(abs(edge - other) > 150 for other in edges):
            edges.append(edge)
    return edges


def _tsv_text(tsv: str) -> str:
    """Plain text from tesseract's TSV: one line per line it found."""
    lines: dict[tuple[str, str, str, str], list[str]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5" or not (row.get("text") or "").strip():
            continue
        key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
        lines.setdefault(key, []).append(row["text"])
    return "\n".join(" ".join(words) for words in lines.values())


def read_text(image_bytes: bytes, timeout: float = 30) -> str | None:
    """The text tesseract reads in an image (one sparse-text pass); None without tesseract."""
    reading = read_labels(image_bytes, [], time_budget=timeout)
    return None if reading is None else reading.text


def _unaccented(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _squash(text: str) -> str:
    """Whitespace collapsed; removed altogether between CJK characters, which tesseract
    sometimes spaces out."""
    text = " ".join(text.split())
    if any(_script(char) in ("han", "kana") for char in text):
        text = text.replace(" ", "")
    return text


def _candidates(text: str, words_in_label: int) -> list[str]:
    """Lines and runs of consecutive words about as long as the label: the pieces a label
    may match (a wrapped label spans lines, so runs cross them)."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    words = " ".join(lines).split()
    shortest, longest = max(1, words_in_label - 1), words_in_label + 1
    runs = {
        " ".join(words[i : i + length])
        for length in range(shortest, longest + 1)
        for i in range(0, max(0, len(words) - length) + 1)
    }
    return [*lines, *runs]


def suggest(labels: list[str], text: str) -> list[Suggestion]:
    """For each expected label, the closest piece of OCR text and a first verdict."""
    suggestions = []
    for label in labels:
        wanted = _squash(label)
        best, score = "", 0.0
        for piece in _candidates(text, len(label.split())):
            squashed = _squash(piece)
            if squashed == wanted:
                best, score = piece, 1.0
                break
            ratio = difflib.SequenceMatcher(None, wanted.casefold(), squashed.casefold()).ratio()
            if ratio > score:
                best, score = piece, ratio
        if score < MATCH_THRESHOLD:
            suggestions.append(Suggestion(label, "", "missing", score=score))
        elif _squash(best) == wanted:
            suggestions.append(Suggestion(label, label, "exact", score=1.0))
        else:
            suggestions.append(Suggestion(label, best, "wrong", score=score))
    return suggestions


def diff_segments(expected: str, observed: str) -> list[tuple[str, str]]:
    """Character-level differences as (kind, text): same, missing (in expected only),
    extra (in observed only)."""
    segments = []
    matcher = difflib.SequenceMatcher(None, expected, observed, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            segments.append(("same", expected[a0:a1]))
            continue
        if a1 > a0:
            segments.append(("missing", expected[a0:a1]))
        if b1 > b0:
            segments.append(("extra", observed[b0:b1]))
    return segments
