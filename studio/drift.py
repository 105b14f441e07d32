"""Drift check: how much of the area a mask protected did an edit change anyway?

A mask's opaque pixels say "keep this". A route that drops the mask (a gateway that forwards
only the prompt, say) hands back an image changed all over, and nothing in the API answer
says so. After a masked edit the studio compares each output with the source outside the
editable area: the share of protected pixels that changed beyond a small tolerance is the
drift ratio, shown on the request page with a heatmap and flagged above DRIFT_THRESHOLD.

The comparison runs on a grid of small cells (the images averaged down, at most ANALYSIS_EDGE
cells on the long side), so JPEG and WebP compression noise does not count as change, and
cells within MARGIN_CELLS of the editable area are left out, since models blend an edit
into its surroundings. When the output's shape differs from the source's, the source and the
mask are cropped about the centre to the output's shape first, as the sandbox does.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter, ImageOps

from studio.uploads import UNREADABLE, UploadRejected, eight_bit, open_header

# Defaults that would be settings; kept here so the check has one home.
DRIFT_THRESHOLD = 0.10  # share of protected cells; above it the output is flagged
TOLERANCE = 24  # largest channel difference (0-255) a cell may show and still count as kept
MARGIN_CELLS = 2  # cells next to the editable area that may blend with it
ANALYSIS_EDGE = 512  # cells on the long side of the analysis grid
HEATMAP_EDGE = 768


@dataclass(frozen=True)
class Drift:
    ratio: float | None  # None: the mask protected nothing, so nothing could drift
    protected_cells: int
    changed_cells: int
    grid: tuple[int, int]
    difference: Image.Image  # "L", per cell: the largest channel difference
    protected: Image.Image  # "L", per cell: 255 where the mask protected it
    editable: Image.Image  # "L", per cell: 255 where the mask allowed changes

    @property
    def percent(self) -> float | None:
        return None if self.ratio is None else 100 * self.ratio


def measure(source: Image.Image, mask: Image.Image, output: Image.Image) -> Drift:
    """Compare an edit's output with its source outside the mask's transparent area."""
    size = output.size
    cell = max(1, -(-max(size) // ANALYSIS_EDGE))  # ceil: cells of cell x cell pixels
    grid = (max(1, size[0] // cell), max(1, size[1] // cell))

    before = ImageOps.fit(source.convert("RGB"), size, method=Image.Resampling.LANCZOS)
    alpha = mask.convert("RGBA").getchannel("A")
    editable_px = ImageOps.fit(
        alpha.point([255] + [0] * 255), size, method=Image.Resampling.NEAREST
    )

    def cells(image: Image.Image) -> Image.Image:
        return image.resize(grid, Image.Resampling.BOX)

    difference = ImageChops.difference(cells(before), cells(output.convert("RGB")))
    red, green, blue = difference.split()
    largest = ImageChops.lighter(ImageChops.lighter(red, green), blue)

    # A cell is editable if any of its pixels is; then grow that area by the margin.
    editable = cells(editable_px).point(lambda value: 255 if value else 0)
    if MARGIN_CELLS:
        editable = editable.filter(ImageFilter.MaxFilter(2 * MARGIN_CELLS + 1))
    protected = ImageOps.invert(editable)
    changed = largest.point(lambda value: 255 if value > TOLERANCE else 0)
    changed_protected = ImageChops.multiply(changed, protected)

    protected_cells = protected.histogram()[255]
    changed_cells = changed_protected.histogram()[255]
    ratio = changed_cells / protected_cells if protected_cells else None
    return Drift(ratio, protected_cells, changed_cells, grid, largest, protected, editable)


def heatmap(drift: Drift, output: Image.Image) -> Image.Image:
    """The output in faded grey; the editable area tinted blue; protected cells that changed
    in red, brighter the more they changed."""
    base = output.convert("L").resize(drift.grid, Image.Resampling.BOX)
    base = base.point(lambda value: 150 + value * 90 // 255).convert("RGB")
    blue = Image.new("RGB", drift.grid, (70, 120, 230))
    base = Image.composite(
        Image.blend(base, blue, 0.45), base, drift.editable.point(lambda v: 255 if v else 0)
    )
    # Strength: 0 at the tolerance, full at four times it.
    strength = drift.difference.point(
        lambda value: 0 if value <= TOLERANCE else min(255, 96 + (value - TOLERANCE) * 6)
    )
    strength = ImageChops.multiply(strength, drift.protected)
    red = Image.new("RGB", drift.grid, (220, 30, 30))
    painted = Image.composite(red, base, strength)
    scale = HEATMAP_EDGE / max(drift.grid)
    shown = (max(1, round(drift.grid[0] * scale)), max(1, round(drift.grid[1] * scale)))
    return painted.resize(shown, Image.Resampling.NEAREST)


def heatmap_png(drift: Drift, output: Image.Image) -> bytes:
    buffer = io.BytesIO()
    heatmap(drift, output).save(buffer, "PNG")
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    """Open bytes the studio stored (outputs and re-encoded inputs) in an 8-bit mode with
    their tones kept; whatever keeps them from being read (damage, a provider's bomb) is an
    OSError, which callers already treat as a file they cannot use."""
    try:
        image = open_header(data, ("PNG", "JPEG", "WEBP"))
        image.load()
        return eight_bit(image)
    except UploadRejected as problem:
        raise OSError(f"The stored image cannot be read: {problem}") from None
    except UNREADABLE as problem:
        raise OSError(f"The stored image cannot be read: {problem}") from None


def check_edit(request, outputs: list) -> None:
    """Measure and record drift for each (OutputImage, bytes) of a masked edit."""
    measured = ratios(request, [data for _, data in outputs])
    for (output, _), ratio in zip(outputs, measured, strict=True):
        if ratio is not None:
            output.record_drift(ratio)


def ratios(request, images: list[bytes]) -> list[float | None]:
    """The drift of each image of a masked edit, before its output rows exist; None for
    each when the request has no mask and source."""
    mask_input, source_input = request.mask_input, request.source_input
    if mask_input is None or source_input is None:
        return [None] * len(images)
    source, mask = open_image(source_input.read()), open_image(mask_input.read())
    return [measure(source, mask, open_image(data)).ratio for data in images]


def measure_output(output) -> tuple[Drift, Image.Image] | None:
    """The drift of a stored output of a masked edit, measured again from storage."""
    request = output.request
    mask_input, source_input = request.mask_input, request.source_input
    if mask_input is None or source_input is None:
        return None
    image = open_image(output.read())
    drift = measure(open_image(source_input.read()), open_image(mask_input.read()), image)
    return drift, image
