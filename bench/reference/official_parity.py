#!/usr/bin/env python3
"""Do the official VAR code and VarSharp sample the same images from one bundle?

Reads a folder written by `varsharp sample --shared-rng` (its samples.jsonl and PNGs), samples the same classes in
one batch with the official VAR.autoregressive_infer_cfg (same cfg, top-k, top-p and g_seed), and compares pixel by
pixel in 8-bit levels. With --shared-rng our sampler consumes its generator exactly as the official one does, so even
random sampling can agree token for token where both libtorch versions draw alike; greedy sampling (--top-k 1) does
not depend on the generator at all. Prints one JSON object.
"""
import argparse
import contextlib
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from official_bench import build  # noqa: E402


def read_png(path):
    """8-bit grayscale or RGB, non-interlaced PNG (what VarSharp writes) -> uint8 array (H, W, C)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (0, 2) and interlace == 0, f"{path}: unsupported PNG layout"
            channels = 1 if color == 0 else 3
        elif kind == b"IDAT":
            idat += body
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8)
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, cur = line[0], line[1:].astype(np.int32)
        row = np.zeros(stride, dtype=np.int32)
        for x in range(stride):
            a = row[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if kind == 0: pred = 0
            elif kind == 1: pred = a
            elif kind == 2: pred = b
            elif kind == 3: pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            row[x] = (cur[x] + pred) & 0xFF
        out[y], prev = row, row
    return out.reshape(height, width, channels).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--var-repo", required=True)
    ap.add_argument("--ours", required=True, help="folder written by varsharp sample --shared-rng")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with contextlib.redirect_stdout(sys.stderr):
        _, var, _ = build(a.bundle, a.var_repo)

    rows = [json.loads(line) for line in open(os.path.join(a.ours, "samples.jsonl"))]
    first = rows[0]
    assert all(r["shared_seed"] is not None for r in rows), "sample with --shared-rng"
    labels = torch.tensor([r["class"] for r in rows], dtype=torch.long)
    with torch.inference_mode():
        images = var.autoregressive_infer_cfg(B=len(rows), label_B=labels, g_seed=first["shared_seed"], cfg=first["cfg"],
                                              top_k=first["top_k"], top_p=first["top_p"], more_smooth=first["more_smooth"])
    levels = (images.permute(0, 2, 3, 1).double().numpy() * 255.0)   # (B, H, W, C) in [0, 255]
    diffs = []
    for r, official in zip(rows, levels):
        ours = read_png(os.path.join(a.ours, r["file"])).astype(np.float64)
        if ours.shape[-1] != official.shape[-1]:
            official = official.mean(-1, keepdims=True) if ours.shape[-1] == 1 else official
        diffs.append(float(np.abs(ours - official).max()))
    json.dump({
        "images": len(rows), "cfg": first["cfg"], "top_k": first["top_k"], "top_p": first["top_p"], "seed": first["shared_seed"],
        # Our PNG rounds to the nearest level, so an identical image is within 0.5 of the official value.
        "within_rounding": sum(d <= 0.5 + 1e-3 for d in diffs),
        "max_level_difference": max(diffs),
        "per_image_max_level_difference": diffs,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
