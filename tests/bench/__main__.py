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
from studio.uploads import Role, read_input_image  # noqa: E402

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


def photo_like(width: int, height: int, alpha: bool):
    """Noise over gradients: compresses like a photograph, not like a flat test card."""
    from PIL import Image, ImageChops

    gradient = Image.linear_gradient("L").resize((width, height))
    channels = [
        ImageChops.add(gradient, Image.effect_noise((width, height), 12 + 4 * band), 1, -128)
        for band in range(3)
    ]
    channels[1] = channels[1].transpose(Image.Transpose.ROTATE_180)
    if alpha:
        channels.append(Image.new("L", (width, height), 230))
    return Image.merge("RGBA" if alpha else "RGB", channels)


PEAK_SCRIPT = """
import io, os, resource, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from PIL import Image
from studio.uploads import Role, read_input_image
data = open(sys.argv[2], "rb").read()
def kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = kib()
if sys.argv[1] == "decode":
    with Image.open(io.BytesIO(data)) as image:
        image.load()
else:
    read_input_image(io.BytesIO(data), len(data), "bench", Role.SOURCE)
print((kib() - before) / 1024)
"""


def peak_mib(kind: str, path: str) -> float:
    """The resident memory a decode or a check adds, in a fresh process (MiB): Pillow's
    pixel buffers are not Python allocations, so only the process's high-water mark sees
    them."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, kind, path],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.split()[-1])


def uploads() -> None:
    """Checking an upload against a bare Pillow decode of the same bytes (issue 16: at most
    1.5x the time and 2x the memory)."""
    import io
    import tempfile

    from PIL import Image

    print()
    print(f"upload check vs bare Pillow decode, median of {REPEATS} runs")
    print(
        f"{'file':>24} {'bytes':>12} {'decode ms':>10} {'check ms':>9} {'ratio':>6} "
        f"{'decode MiB':>11} {'check MiB':>10} {'ratio':>6}"
    )
    cases = [
        ("4K RGBA PNG", photo_like(3840, 2160, True), "PNG", {}),
        ("4K RGB JPEG q92", photo_like(3840, 2160, False), "JPEG", {"quality": 92}),
        ("4K RGBA WebP q90", photo_like(3840, 2160, True), "WEBP", {"quality": 90}),
    ]
    for label, image, pillow_format, options in cases:
        buffer = io.BytesIO()
        image.save(buffer, pillow_format, **options)
        data = buffer.getvalue()

        def bare(data=data):
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()

        def check(data=data):
            read_input_image(io.BytesIO(data), len(data), "bench", Role.SOURCE)

        decode_ms, check_ms = median_ms(bare), median_ms(check)
        with tempfile.NamedTemporaryFile(suffix=".img") as file:
            file.write(data)
            file.flush()
            decode_mib = peak_mib("decode", file.name)
            check_mib = peak_mib("check", file.name)
        print(
            f"{label:>24} {len(data):12,} {decode_ms:10.1f} {check_ms:9.1f} "
            f"{check_ms / decode_ms:6.2f} {decode_mib:11.1f} {check_mib:10.1f} "
            f"{check_mib / decode_mib:6.2f}"
        )


if __name__ == "__main__":
    main()
    uploads()
