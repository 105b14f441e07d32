"""`make bench`: figures for the image path, printed as medians of repeated runs.

What it measures: the sandbox drawing an image (what every local request waits for) and
the worker's check of a returned image (base64 decode, Pillow verify and full decode,
SHA-256), per size and format. Medians and ratios come from one run; machines are noisy.
"""

from __future__ import annotations

import base64
import os
import statistics
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from studio.imagegen import decode_image  # noqa: E402
from studio.sandbox.render import Picture, render_image  # noqa: E402

SIZES = [(1024, 1024), (1536, 1024), (2560, 1440), (3840, 2160)]
FORMATS = ["png", "jpeg", "webp"]
REPEATS = 5


def median_ms(action, repeats: int = REPEATS) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    print(f"image path, median of {REPEATS} runs (ms)")
    print(f"{'size':>10} {'format':>6} {'render':>9} {'verify':>9} {'bytes':>10}")
    for width, height in SIZES:
        for output_format in FORMATS:
            picture = Picture(
                text='Bench poster "SPRING SALE" and "Morning Ritual"',
                labels=("SPRING SALE", "Morning Ritual"),
                width=width,
                height=height,
                quality="medium",
                output_format=output_format,
                output_compression=90 if output_format != "png" else None,
                index=0,
                count=1,
            )
            data = render_image(picture)
            encoded = base64.b64encode(data).decode()
            render = median_ms(lambda p=picture: render_image(p))
            verify = median_ms(lambda e=encoded, f=output_format: decode_image(e, expected=f))
            size = f"{width}x{height}"
            print(f"{size:>10} {output_format:>6} {render:9.1f} {verify:9.1f} {len(data):10,}")


if __name__ == "__main__":
    main()
