#!/usr/bin/env python3
"""Checks `varsharp export` output with PyTorch itself: the other half of scripts/check-pytorch-export.sh.

For each export folder: torch.load(..., weights_only=True) reads vae.pth / var.pth (plain tensors, no code); with
--var-repo (a checkout of FoundationVision/VAR, imported, never copied) the official VQVAE and VAR modules are built
from the source bundle's config.json and take the state dicts with strict key matching; with --reference-vae /
--reference-var (a golden case's weights_vae.pth / weights_var.pth, written by the official code) every tensor must be
equal, dtype and shape included. Prints one line per check and exits non-zero on the first failure.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load(path):
    kwargs = {"map_location": "cpu"}
    if "weights_only" in torch.load.__code__.co_varnames:
        kwargs["weights_only"] = True
    return torch.load(path, **kwargs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--export", required=True, help="folder written by varsharp export")
    p.add_argument("--bundle", required=True, help="the model folder it was exported from (for config.json)")
    p.add_argument("--var-repo")
    p.add_argument("--reference-vae")
    p.add_argument("--reference-var")
    a = p.parse_args()

    dicts = {}
    for name in ("vae", "var"):
        path = os.path.join(a.export, f"{name}.pth")
        if os.path.exists(path):
            dicts[name] = load(path)
            print(f"  torch {torch.__version__} loads {path} (weights_only): {len(dicts[name])} tensors")

    for name, ref_path in (("vae", a.reference_vae), ("var", a.reference_var)):
        if ref_path:
            ours, ref = dicts[name], torch.load(ref_path, map_location="cpu")
            assert sorted(ours) == sorted(ref), f"{name}: keys differ: {sorted(set(ours) ^ set(ref))}"
            for k, v in ref.items():
                assert ours[k].dtype == v.dtype and ours[k].shape == v.shape and torch.equal(ours[k], v), f"{name}: {k} differs"
            print(f"  every tensor of {name}.pth equals {ref_path}")

    if a.var_repo:
        config = json.load(open(os.path.join(a.bundle, "config.json")))
        from official_bench import build_modules

        vae, var = build_modules(config, a.var_repo)
        # nn.Module's own method: VQVAE's override passes `assign`, which torch before 2.1 does not know.
        if vae is not None and "vae" in dicts and config.get("vqvae") is not None:
            torch.nn.Module.load_state_dict(vae, dicts["vae"], strict=True)
            print("  the official VQVAE takes vae.pth with strict=True")
        if var is None and "var" in dicts:
            sys.exit("var.pth was exported but the config has no 'var' block to build the official VAR from")
        if var is not None and "var" in dicts:
            var.load_state_dict(dicts["var"], strict=True)
            print("  the official VAR takes var.pth with strict=True")


if __name__ == "__main__":
    main()
