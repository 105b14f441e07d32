"""A campaign's table: read (CSV or TSV, UTF-8 with or without BOM), checked row by row.

Outside data enters here and leaves as small typed objects: `RowSpec` for each valid row,
`Problem` for each thing wrong, named by row and column. Nothing downstream reads the raw
text again. Sizes go through studio.imagerules, prompts through the frame's own render(),
labels through the studio's one label rule.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from studio import imagerules
from studio.middleware import CONTROL_CHARACTERS
from studio.models import MAX_SLOT_CHARS, PLACEHOLDER_PATTERN, PromptFrame, SlotErrors
from studio.uploads import CheckedImage

# Columns every campaign table may have besides its slots.
SETTING_COLUMNS = ("locale", "size", "quality", "output_format", "n", "source")
MAX_IMAGES_PER_ROW = 10
# BCP 47 in the shape people write it: en, en-GB, pt-BR, zh-Hans-CN, es-419.
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}$")
# Data rows are numbered from 1 (the header is not counted): row 3 is the third product.


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the table: the data row (1-based; None for the whole table or
    the header) and the column it is in (None for the whole row)."""

    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"Row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}" if where else f"Column {self.column}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass(frozen=True)
class Defaults:
    """What a row without its own setting columns asks for."""

    width: int
    height: int
    quality: str
    output_format: str
    n: int = 1


@dataclass(frozen=True)
class RowSpec:
    """One valid row, ready to become a GenerationRequest."""

    number: int
    values: dict[str, str]
    locale: str
    width: int
    height: int
    quality: str
    output_format: str
    n: int
    prompt: str
    labels: list[str]
    source: CheckedImage | None = None  # an edit row: the image it edits, checked


# Reads a `source` cell (an output ID): the checked image, or raises ValueError naming why not.
SourceReader = Callable[[str], CheckedImage]


@dataclass
class CheckedTable:
    columns: list[str] = field(default_factory=list)
    rows: list[RowSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return not self.problems and bool(self.rows)


def free_prompt_frame(template: str) -> PromptFrame:
    """An unsaved frame for a free prompt with {slot} gaps: every gap a required slot, so
    the free prompt renders by the same rules as a frame."""
    names = list(dict.fromkeys(PLACEHOLDER_PATTERN.findall(template)))
    return PromptFrame(
        name="free prompt",
        template=template,
        slots=[{"name": name, "label": name} for name in names],
    )


def decode(raw: bytes) -> str:
    """UTF-8 text with any BOM removed; ValueError naming the line of the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ValueError(
            f"The file is not UTF-8 text: byte {error.start + 1} (line {line}) cannot be "
            "read. Save it as CSV UTF-8 (or TSV UTF-8) and upload it again."
        ) from None


def read_rows(text: str) -> list[list[str]]:
    """The table's cells, header first. Tab-separated when the header line has a tab, else
    comma-separated; blank lines at the very end are dropped, other blank lines stay (as
    empty rows, which the check refuses). ValueError names the line csv cannot read."""
    text = text.removeprefix("\ufeff")
    header_line = text.split("\n", 1)[0]
    dialect = "excel-tab" if "\t" in header_line else "excel"
    reader = csv.reader(io.StringIO(text, newline=""), dialect=dialect)
    try:
        rows = list(reader)
    except csv.Error as error:
        # A NUL byte, or a cell past the csv module's field limit (128 KiB).
        raise ValueError(f"The table cannot be read at line {reader.line_num}: {error}.") from None
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    return rows


def matrix_to_rows(text: str) -> list[list[str]]:
    """A localization matrix (first column: slot names; one column per locale, its header
    the locale) turned into a table with one row per locale and a locale column."""
    cells = read_rows(text)
    if not cells:
        return []
    locales = [cell.strip() for cell in cells[0][1:]]
    slots = [row[0].strip() for row in cells[1:] if row]
    table = [["locale", *slots]]
    for position, locale in enumerate(locales, start=1):
        values = [row[position] if position < len(row) else "" for row in cells[1:] if row]
        table.append([locale, *values])
    return table


def check(
    rows: list[list[str]], frame, defaults: Defaults, read_source: SourceReader | None = None
) -> CheckedTable:
    """Check every row of the table against the frame (a PromptFrameVersion, or the free
    prompt's frame) at once: each problem named by row and column. An edit frame needs a
    `source` column (an output ID per row, read by `read_source` through the upload
    checks); without `read_source` the column is refused."""
    table = CheckedTable()
    if not rows:
        table.problems.append(
            Problem("The table is empty: give a header row and at least one row.")
        )
        return table
    header, data = rows[0], rows[1:]
    limit = settings.CAMPAIGN_MAX_ROWS
    if len(data) > limit:
        table.problems.append(
            Problem(f"The table has {len(data):,} rows; a campaign takes at most {limit:,}.")
        )
        return table
    if not data:
        table.problems.append(Problem("The table has a header but no rows."))
        return table
    slots = {slot.name: slot for slot in frame.slot_list()}
    columns = [cell.strip() for cell in header]
    table.columns = columns
    header_ok = True
    for position, name in enumerate(columns, start=1):
        if not name:
            table.problems.append(Problem(f"Column {position} has no name in the header.", None))
            header_ok = False
        elif name not in slots and name not in SETTING_COLUMNS:
            known = ", ".join([*slots, *SETTING_COLUMNS])
            table.problems.append(
                Problem(f"unknown column (this table may have: {known}).", column=name)
            )
            header_ok = False
        elif columns.index(name) != position - 1:
            table.problems.append(Problem("appears twice in the header.", column=name))
            header_ok = False
    is_edit = getattr(frame, "operation", "generate") == PromptFrame.Operation.EDIT
    if is_edit and "source" not in columns:
        table.problems.append(
            Problem(
                f"missing: the {frame.name} frame edits an image; name it by output ID.",
                column="source",
            )
        )
        header_ok = False
    if "source" in columns and read_source is None:
        table.problems.append(Problem("this table cannot take source images.", column="source"))
        header_ok = False
    for name, slot in slots.items():
        if slot.required and name not in columns:
            table.problems.append(
                Problem(
                    f"missing: the {frame.name} frame needs the slot {slot.label}.", column=name
                )
            )
            header_ok = False
    if not header_ok:
        return table
    sources: dict[str, CheckedImage | str] = {}

    def source_for(value: str) -> CheckedImage | str:
        """Each source once, however many rows edit it: the image, or what is wrong."""
        if value not in sources:
            try:
                sources[value] = read_source(value)
            except ValueError as problem:
                sources[value] = str(problem)
        return sources[value]

    for number, cells in enumerate(data, start=1):
        spec = _check_row(
            number, cells, columns, slots, frame, defaults, table.problems, source_for, is_edit
        )
        if spec is not None:
            table.rows.append(spec)
    return table


def _check_row(
    number, cells, columns, slots, frame, defaults, problems, source_for, is_edit
) -> RowSpec | None:
    if not any(cell.strip() for cell in cells):
        problems.append(Problem("empty row.", number))
        return None
    if len(cells) != len(columns):
        problems.append(
            Problem(f"has {len(cells)} cells; the header has {len(columns)} columns.", number)
        )
        return None
    found = len(problems)
    row = dict(zip(columns, cells, strict=True))
    for name, value in row.items():
        if control := CONTROL_CHARACTERS.search(value):
            problems.append(
                Problem(
                    f"holds a control character (U+{ord(control.group()):04X}), which no "
                    "field of the studio accepts.",
                    number,
                    name,
                )
            )
    if len(problems) > found:
        return None
    values = {}
    for name in slots:
        value = row.get(name, "")
        if "\n" in value or "\r" in value:
            problems.append(
                Problem(
                    "a slot value may not hold a line break (separate labels with |).", number, name
                )
            )
        elif len(value) > MAX_SLOT_CHARS:
            problems.append(
                Problem(
                    f"at most {MAX_SLOT_CHARS:,} characters (this is {len(value):,}).", number, name
                )
            )
        values[name] = value
    locale = row.get("locale", "").strip()
    if locale and not LOCALE_PATTERN.match(locale):
        problems.append(
            Problem(f"{locale!r} is not a locale such as en-GB or pt-BR.", number, "locale")
        )
    width, height = defaults.width, defaults.height
    source = None
    if raw_source := row.get("source", "").strip():
        looked_up = source_for(raw_source)
        if isinstance(looked_up, str):
            problems.append(Problem(looked_up, number, "source"))
        else:
            source = looked_up
            width, height = imagerules.edit_output_size(source.width, source.height)
    elif is_edit:
        problems.append(Problem("the output ID of the image this row edits.", number, "source"))
    if size := row.get("size", "").strip():
        parsed = imagerules.parse_size(size)
        if parsed is None:
            problems.append(
                Problem("write the size as WIDTHxHEIGHT, e.g. 1024x1536.", number, "size")
            )
        else:
            width, height = parsed
            for message in imagerules.size_problems(width, height):
                problems.append(Problem(message, number, "size"))
    quality = row.get("quality", "").strip() or defaults.quality
    if quality not in imagerules.QUALITIES:
        problems.append(Problem(f"one of {', '.join(imagerules.QUALITIES)}.", number, "quality"))
    output_format = row.get("output_format", "").strip().lower() or defaults.output_format
    if output_format not in imagerules.OUTPUT_FORMATS:
        problems.append(
            Problem(f"one of {', '.join(imagerules.OUTPUT_FORMATS)}.", number, "output_format")
        )
    n = defaults.n
    if raw_n := row.get("n", "").strip():
        if raw_n.isascii() and raw_n.isdigit() and 1 <= int(raw_n) <= MAX_IMAGES_PER_ROW:
            n = int(raw_n)
        else:
            problems.append(Problem(f"a whole number from 1 to {MAX_IMAGES_PER_ROW}.", number, "n"))
    if len(problems) > found:
        return None
    try:
        rendered = frame.render(values)
    except SlotErrors as errors:
        for name, message in errors.errors.items():
            problems.append(Problem(message, number, name))
        return None
    labels = imagerules.expected_labels(rendered.prompt, rendered.expected_text_labels)
    for message in imagerules.label_problems(labels):
        problems.append(Problem(message, number))
    if len(rendered.prompt) > imagerules.MAX_PROMPT_CHARS:
        problems.append(
            Problem(
                f"the prompt is {len(rendered.prompt):,} characters; gpt-image-2 accepts at "
                f"most {imagerules.MAX_PROMPT_CHARS:,}.",
                number,
            )
        )
    if len(problems) > found:
        return None
    return RowSpec(
        number=number,
        values=values,
        locale=locale,
        width=width,
        height=height,
        quality=quality,
        output_format=output_format,
        n=n,
        prompt=rendered.prompt,
        labels=labels,
        source=source,
    )
