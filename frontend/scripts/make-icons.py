#!/usr/bin/env python3
"""Draws the app's PNG icons (the favicon's blue square with a white Q) for the web app manifest
and iOS: 192 and 512 px, a maskable 512 px one whose Q stays inside the 80 % safe zone, and the
180 px apple-touch-icon. Run once after changing the design; the PNGs are committed (a few KB).

    python3 frontend/scripts/make-icons.py     # needs Pillow
"""

from pathlib import Path

from PIL import Image, ImageDraw

BLUE = (37, 99, 235, 255)
WHITE = (255, 255, 255, 255)
OUT = Path(__file__).resolve().parent.parent / "public" / "icons"
SCALE = 4  # drawn larger, then downsampled: smooth edges without a font


def draw(size: int, *, maskable: bool) -> Image.Image:
    big = size * SCALE
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    if maskable:
        d.rectangle((0, 0, big, big), fill=BLUE)
    else:
        d.rounded_rectangle((0, 0, big - 1, big - 1), radius=big * 14 // 64, fill=BLUE)
    glyph = 0.56 if maskable else 0.66  # the Q's share of the side
    r = big * glyph / 2
    cx = cy = big / 2
    cy -= big * 0.02
    stroke = big * glyph * 0.16
    d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=WHITE, width=int(stroke))
    tail = [(cx + r * 0.25, cy + r * 0.35), (cx + r * 1.02, cy + r * 1.08)]
    d.line(tail, fill=WHITE, width=int(stroke * 1.05))
    return img.resize((size, size), Image.LANCZOS)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, size, maskable in [("icon-192.png", 192, False), ("icon-512.png", 512, False), ("maskable-512.png", 512, True), ("apple-touch-icon.png", 180, True)]:
        img = draw(size, maskable=maskable).quantize(32, method=Image.Quantize.FASTOCTREE)  # a few KB
        img.save(OUT / name, optimize=True)
        print(f"{name}: {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
