#!/usr/bin/env python3
"""Writes the Pillow LANCZOS resizes that ResamplerPillowTests compares our resampler with.

Needs Debian's python3-pil. The inputs are computed from a formula (the test computes the same pixels), so only the
outputs are stored: tests/VarSharp.Tests/Data/pillow/<name>-<w>x<h>.png.
"""
import os
from PIL import Image

HERE = os.path.join(os.path.dirname(__file__), "..", "tests", "VarSharp.Tests", "Data", "pillow")


def pattern(kind, w, h):
    """RGB bytes, row-major: a 4-pixel checkerboard (hard edges) or a hash pattern (noise)."""
    out = bytearray()
    for y in range(h):
        for x in range(w):
            for c in range(3):
                if kind == "checker":
                    v = 255 if ((x // 4) + (y // 4) + c) % 2 == 0 else 0
                else:
                    v = ((x * 73856093) ^ (y * 19349663) ^ (c * 83492791)) % 251
                out.append(v)
    return bytes(out)


CASES = [("checker", 80, 60, 48, 36), ("noise", 30, 24, 45, 36), ("noise", 64, 48, 20, 15)]

if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    for kind, w, h, ow, oh in CASES:
        img = Image.frombytes("RGB", (w, h), pattern(kind, w, h))
        img.resize((ow, oh), Image.LANCZOS).save(os.path.join(HERE, f"{kind}-{w}x{h}-to-{ow}x{oh}.png"))
