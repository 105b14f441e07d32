"""`make bench`: how well OCR reads the labels the sandbox draws, and catches misspelt ones.

At least 500 labels are drawn through the sandbox renderer (`studio.sandbox.render`) across
sizes, label lengths, fonts, ink and panel colours, backgrounds (each prompt seeds its own
hue and shapes; quality sets how many) and several labels per image, wrapping when long.
Images whose prompt carries `[sandbox:typo]` have their first label misspelt, as the
sandbox does for a request, so that a fifth of all labels are wrong in the image.

Printed: exact-label recall (correct labels OCR reads exactly) and typo catch rate
(misspelt labels OCR does not read as the expected text), against the targets of 99% and
98%, then per font, size and language; Japanese and Simplified Chinese apart.

The sandbox renderer draws with Pillow's built-in font, dark ink on a light panel; the bench
swaps the renderer's font and colours for a case (its `_font`, `INK` and `PANEL`) so that
the same layout code draws every style. Pillow's built-in font has no accented letters or
CJK glyphs, so those labels are drawn with DejaVu and WenQuanYi (Debian packages).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import Pool

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from PIL import ImageFont  # noqa: E402

from review import ocr  # noqa: E402
from studio.sandbox import render  # noqa: E402
from studio.sandbox.directives import Directives, strip_directives  # noqa: E402

SEED = 15
MIN_LABELS = 520
TYPO_SHARE = 0.2
RECALL_TARGET, TYPO_TARGET = 0.99, 0.98
FONT_DIR = "/usr/share/fonts/truetype"
FONTS = {
    "sandbox (Aileron)": None,
    "DejaVu Sans": f"{FONT_DIR}/dejavu/DejaVuSans.ttf",
    "DejaVu Sans Bold": f"{FONT_DIR}/dejavu/DejaVuSans-Bold.ttf",
    "DejaVu Serif": f"{FONT_DIR}/dejavu/DejaVuSerif.ttf",
    "DejaVu Sans Mono": f"{FONT_DIR}/dejavu/DejaVuSansMono.ttf",
    "Liberation Sans": f"{FONT_DIR}/liberation/LiberationSans-Regular.ttf",
    "Liberation Serif Italic": f"{FONT_DIR}/liberation/LiberationSerif-Italic.ttf",
}
CJK_FONT = f"{FONT_DIR}/wqy/wqy-microhei.ttc"
# (name, ink, panel); a panel of None draws the text straight onto the background.
STYLES = [
    ("dark on cream", (18, 18, 24), (250, 249, 244)),
    ("white on navy", (250, 250, 250), (24, 32, 64)),
    ("red on yellow", (150, 20, 30), (255, 240, 170)),
    ("blue on white", (20, 50, 160), (255, 255, 255)),
    ("dark, no panel", (18, 18, 24), None),
]
SIZES = [(1024, 1024), (1536, 1024), (1024, 1536), (2048, 1152), (2560, 1440), (3840, 2160)]
QUALITIES = ["low", "medium", "high"]
WORDS = [
    "spring",
    "summer",
    "autumn",
    "winter",
    "sale",
    "open",
    "day",
    "grand",
    "opening",
    "market",
    "harbour",
    "studio",
    "coffee",
    "fresh",
    "bread",
    "morning",
    "ritual",
    "night",
    "launch",
    "luma",
    "pro",
    "stride",
    "free",
    "entry",
    "members",
    "only",
    "new",
    "collection",
    "limited",
    "edition",
    "weekend",
    "festival",
    "city",
    "run",
    "garden",
    "party",
    "book",
    "club",
    "tickets",
    "available",
    "now",
    "fresh",
    "roast",
    "organic",
    "tea",
    "house",
    "vintage",
    "records",
    "repair",
    "cafe",
    "yoga",
    "class",
    "modern",
    "living",
    "home",
    "office",
    "north",
    "coast",
    "field",
    "notes",
]
EXTRAS = ["10:00 - 16:00", "50% OFF", "$29.99", "2026", "No. 7", "24/7", "3 for 2"]
EUROPEAN = {
    "deu": ["Frühstück", "Straße frei", "Größe zählt", "Schöne Grüße", "Öffnungszeiten"],
    "fra": ["Café crème", "Été indien", "Déjà vu", "Très bientôt", "Fête de la musique"],
    "spa": ["Año nuevo", "Mañana", "Canción del mar", "Pequeño café", "Niños gratis"],
    "ita": ["Caffè latte", "Città aperta", "Perché no", "Più gusto", "Gelato già pronto"],
    "por": ["Promoção", "Pão de queijo", "Coração", "Verão azul", "Lições de mar"],
}
CJK = {
    "jpn": ["春の特売", "営業中", "本日限定", "ありがとう", "新商品", "カフェ", "東京", "夏祭り"],
    "chi_sim": ["春季促销", "欢迎光临", "新品上市", "今日特价", "开业大吉", "咖啡", "北京", "优惠"],
}


@dataclass(frozen=True)
class Case:
    number: int
    labels: tuple[str, ...]
    typo: bool
    font: str
    style: int
    width: int
    height: int
    quality: str
    language: str = "eng"


def _label(rng: random.Random) -> str:
    if rng.random() < 0.12:
        return rng.choice(EXTRAS)
    count = rng.choice([1, 1, 2, 2, 2, 3, 3, 4, 5, 7])
    words = [rng.choice(WORDS) for _ in range(count)]
    case = rng.choice(["upper", "title", "sentence"])
    text = " ".join(words)
    return (
        text.upper() if case == "upper" else text.title() if case == "title" else text.capitalize()
    )


def cases() -> list[Case]:
    rng = random.Random(SEED)
    built: list[Case] = []
    total = typos = 0
    while total < MIN_LABELS:
        language = "eng"
        if rng.random() < 0.2:
            language = rng.choice(sorted(EUROPEAN))
            labels = tuple(rng.sample(EUROPEAN[language], rng.choice([1, 2])))
        else:
            labels = tuple(dict.fromkeys(_label(rng) for _ in range(rng.choice([1, 2, 2, 3]))))
        typo = typos < TYPO_SHARE * (total + len(labels)) - 0.5
        font = rng.choice(list(FONTS))
        if language != "eng" and FONTS[font] is None:
            font = "DejaVu Sans"  # Pillow's built-in font has no accented letters
        width, height = rng.choice(SIZES)
        built.append(
            Case(
                len(built),
                labels,
                typo,
                font,
                rng.randrange(len(STYLES)),
                width,
                height,
                rng.choice(QUALITIES),
                language,
            )
        )
        total += len(labels)
        typos += int(typo)
    return built


def cjk_cases() -> list[Case]:
    rng = random.Random(SEED + 1)
    built = []
    for language, words in CJK.items():
        for index in range(20):
            labels = (words[index % len(words)],)
            width, height = rng.choice(SIZES)
            built.append(
                Case(
                    index,
                    labels,
                    index % 5 == 0,
                    "WenQuanYi Micro Hei",
                    0,
                    width,
                    height,
                    "medium",
                    language,
                )
            )
    return built


@contextmanager
def drawn_with(font_path: str | None, ink, panel):
    original = render._font, render.INK, render.PANEL
    if font_path is not None:
        render._font = lambda size: ImageFont.truetype(font_path, max(1, int(size)))
    render.INK, render.PANEL = ink, panel
    try:
        yield
    finally:
        render._font, render.INK, render.PANEL = original


def misspelt_with_cjk(label: str) -> str:
    """The sandbox's misspelling changes an ASCII letter; a CJK label has none, so the
    bench swaps its first character for another of the same script."""
    return ("夏" if label[0] != "夏" else "冬") + label[1:]


def run_case(case: Case) -> list[tuple[Case, str, bool, ocr.Suggestion]]:
    quoted = " ".join(f'"{label}"' for label in case.labels)
    prompt = f"{'[sandbox:typo] ' if case.typo else ''}Bench poster {quoted}"
    directives = Directives.from_prompt(prompt)
    text = strip_directives(prompt)
    drawn = render.labels_to_draw(text, typo=directives.typo)
    if directives.typo and case.language in CJK:
        drawn[0] = misspelt_with_cjk(drawn[0])
    font_path = CJK_FONT if case.language in CJK else FONTS[case.font]
    _name, ink, panel = STYLES[case.style]
    picture = render.Picture(
        text=text,
        labels=tuple(drawn),
        width=case.width,
        height=case.height,
        quality=case.quality,
        output_format="png",
    )
    with drawn_with(font_path, ink, panel):
        data = render.render_image(picture)
    reading = ocr.read_labels(data, list(case.labels))
    results = []
    for index, suggestion in enumerate(reading.suggestions):
        misspelt = drawn[index] != case.labels[index]
        results.append((case, case.labels[index], misspelt, suggestion))
    return results


def rate(hits: int, count: int) -> str:
    return f"{100 * hits / count:6.2f}% ({hits}/{count})" if count else "     — (0)"


def report(title: str, results) -> tuple[float, float]:
    correct = [r for r in results if not r[2]]
    misspelt = [r for r in results if r[2]]
    read = sum(r[3].verdict == "exact" for r in correct)
    caught = sum(r[3].verdict != "exact" for r in misspelt)
    print(
        f"{title:<28} recall {rate(read, len(correct))}   typo catch {rate(caught, len(misspelt))}"
    )
    return (read / len(correct) if correct else 0.0, caught / len(misspelt) if misspelt else 0.0)


def main() -> int:
    if not ocr.available():
        print("tesseract is not installed: `make system-test-deps` installs it")
        return 1
    main_cases, extra_cases = cases(), cjk_cases()
    started = time.monotonic()
    with Pool(os.cpu_count() or 2) as pool:
        results = [r for batch in pool.map(run_case, main_cases, chunksize=2) for r in batch]
        cjk = [r for batch in pool.map(run_case, extra_cases, chunksize=2) for r in batch]
    elapsed = time.monotonic() - started
    print(
        f"OCR of sandbox labels: {len(results)} labels in {len(main_cases)} images "
        f"({sum(r[2] for r in results)} misspelt), languages installed: "
        f"{', '.join(sorted(ocr.installed_languages()))}"
    )
    recall, catch = report("ALL (targets 99% / 98%)", results)
    print(
        f"{'':<28} recall {'met' if recall >= RECALL_TARGET else 'MISSED'}, "
        f"typo catch {'met' if catch >= TYPO_TARGET else 'MISSED'}"
    )
    groups = {
        "font": lambda case: case.font,
        "style": lambda case: STYLES[case.style][0],
        "size": lambda case: f"{case.width}x{case.height}",
        "language": lambda case: case.language,
        "labels per image": lambda case: str(len(case.labels)),
    }
    for name, key in groups.items():
        print(f"by {name}:")
        split = defaultdict(list)
        for result in results:
            split[key(result[0])].append(result)
        for value in sorted(split):
            report(f"  {value}", split[value])
    print("reported apart:")
    for language in CJK:
        report(f"  {language}", [r for r in cjk if r[0].language == language])
    seconds = [r[3] for r in results]
    print(
        f"{elapsed:.0f} s in all on {os.cpu_count()} processes; "
        f"{elapsed / (len(main_cases) + len(extra_cases)):.2f} s an image"
    )
    misses = [r for r in results if (r[3].verdict == "exact") == r[2]]
    if misses:
        print("misses (first 15): expected | drawn misspelt? | OCR verdict, reading | case")
        for case, label, misspelt, suggestion in misses[:15]:
            print(
                f"  {label!r} | {misspelt} | {suggestion.verdict} {suggestion.observed!r} | "
                f"{case.font}, {STYLES[case.style][0]}, {case.width}x{case.height}"
            )
    del seconds
    return 0


if __name__ == "__main__":
    sys.exit(main())
