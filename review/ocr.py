"""OCR assist for text inspection, through the tesseract command when it is installed.

The reviewer always confirms: OCR only pre-fills what the image seems to say. Without
tesseract the inspection form works by hand.
"""

from __future__ import annotations

import difflib
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)

# Below this similarity an expected label counts as not found in the OCR text.
MATCH_THRESHOLD = 0.6


@dataclass(frozen=True)
class Suggestion:
    label: str
    observed: str
    verdict: str  # exact, wrong or missing
    source: str = "ocr"


def available() -> bool:
    return shutil.which(settings.TESSERACT_CMD) is not None


def read_text(image_bytes: bytes, timeout: float = 30) -> str | None:
    """The text tesseract reads in an image; None when tesseract is absent or fails."""
    if not available():
        return None
    with tempfile.NamedTemporaryFile(suffix=".img") as handle:
        handle.write(image_bytes)
        handle.flush()
        try:
            result = subprocess.run(
                [settings.TESSERACT_CMD, handle.name, "stdout", "--psm", "11"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            )
        except (subprocess.SubprocessError, OSError):
            log.warning("tesseract could not read the image", exc_info=True)
            return None
    return result.stdout


def _candidates(text: str) -> list[str]:
    """Lines and runs of consecutive words: the pieces a label may match."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    words = " ".join(lines).split()
    runs = {
        " ".join(words[i:j])
        for i in range(len(words))
        for j in range(i + 1, min(len(words), i + 8) + 1)
    }
    return [*lines, *runs]


def suggest(labels: list[str], text: str) -> list[Suggestion]:
    """For each expected label, the closest piece of OCR text and a first verdict."""
    pieces = _candidates(text)
    suggestions = []
    for label in labels:
        best, score = "", 0.0
        for piece in pieces:
            ratio = difflib.SequenceMatcher(None, label.casefold(), piece.casefold()).ratio()
            if ratio > score:
                best, score = piece, ratio
        if score < MATCH_THRESHOLD:
            suggestions.append(Suggestion(label, "", "missing"))
        else:
            suggestions.append(Suggestion(label, best, "exact" if best == label else "wrong"))
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
