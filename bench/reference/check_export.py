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


def build_official(config, var_repo):
    from official_bench import stub_missing_modules

    stub_missing_modules(var_repo)
    from models.basic_vae import Decoder, Encoder
    from models.var import VAR
    from models.vqvae import VQVAE

    q, t = config.get("vqvae"), config.get("var")
    vae = var = None
    if q is not None:
        vae = VQVAE(vocab_size=q["vocab_size"], z_channels=q["z_channels"], ch=q["ch"], dropout=q["dropout"], beta=q["beta"],
                    using_znorm=q["using_znorm"], quant_conv_ks=q["quant_conv_ks"], quant_resi=q["quant_resi"],
                    share_quant_resi=q["share_quant_resi"], default_qresi_counts=q["default_qresi_counts"],
                    v_patch_nums=tuple(q["v_patch_nums"]), test_mode=True)
        dd = dict(dropout=q["dropout"], ch=q["ch"], z_channels=q["z_channels"], in_channels=q["in_channels"], ch_mult=tuple(q["ch_mult"]),
                  num_res_blocks=q["num_res_blocks"], using_sa=q["using_sa"], using_mid_sa=q["using_mid_sa"])
        vae.encoder, vae.decoder = Encoder(double_z=False, **dd), Decoder(**dd)
    if t is not None and vae is None:
        # A transformer-only bundle (an imported var_d*.pth) states its tokenizer's V and Cvae in its own block; the
        # official VAR reads only those (and the quantizer) from the tokenizer it is given.
        vae = VQVAE(vocab_size=t["vocab_size"], z_channels=t["cvae"], v_patch_nums=tuple(t["patch_nums"]), test_mode=True)
    if t is not None:
        var = VAR(vae, num_classes=t["num_classes"], depth=t["depth"], embed_dim=t["embed_dim"], num_heads=t["num_heads"],
                  mlp_ratio=t.get("mlp_ratio", 4.0), drop_path_rate=t.get("drop_path_rate", 0.0), cond_drop_rate=t.get("cond_drop_rate", 0.1),
                  norm_eps=t.get("norm_eps", 1e-6), shared_aln=t["shared_aln"], attn_l2_norm=t["attn_l2_norm"],
                  patch_nums=tuple(t["patch_nums"]), flash_if_available=False, fused_if_available=False)
    return vae, var


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
        vae, var = build_official(config, a.var_repo)
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
