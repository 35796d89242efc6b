#!/usr/bin/env python3
"""Sampling and training speed of the official VAR code on a VarSharp model bundle.

The other half of scripts/bench-reference.sh: it builds the official VQVAE and VAR modules (from a checkout of
FoundationVision/VAR given with --var-repo) with the bundle's config.json, loads the bundle's model.safetensors into
them with strict key matching, and times VAR.autoregressive_infer_cfg -- the official sampler, KV cache included --
at each batch size, then one training step as the official trainer takes it. It prints one JSON object on stdout.
Nothing of the official code is copied here; it is imported.
"""
import argparse
import contextlib
import json
import os
import statistics
import struct
import sys
import time
import types

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """name -> torch tensor; BF16 is widened to float32 (the official modules are float32 on CPU)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.copy().reshape(info["shape"]))
    return out


def stub_missing_modules(var_repo):
    """The official modules import dist.py (its own) and huggingface_hub (only for a hub mixin class)."""
    sys.path.insert(0, var_repo)
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        hub = types.ModuleType("huggingface_hub")
        hub.PyTorchModelHubMixin = type("PyTorchModelHubMixin", (), {"__init_subclass__": classmethod(lambda cls, **kw: None)})
        sys.modules["huggingface_hub"] = hub


def build_modules(cfg, var_repo):
    """The official VQVAE and VAR modules a config.json (parsed) describes, untrained; either is None when its block is absent."""
    stub_missing_modules(var_repo)
    from models.basic_vae import Decoder, Encoder
    from models.var import VAR
    from models.vqvae import VQVAE

    q, t = cfg.get("vqvae"), cfg.get("var")
    vae = var = None
    if q is not None:
        vae = VQVAE(vocab_size=q["vocab_size"], z_channels=q["z_channels"], ch=q["ch"], dropout=q["dropout"], beta=q["beta"],
                    using_znorm=q["using_znorm"], quant_conv_ks=q["quant_conv_ks"], quant_resi=q["quant_resi"],
                    share_quant_resi=q["share_quant_resi"], default_qresi_counts=q["default_qresi_counts"],
                    v_patch_nums=tuple(q["v_patch_nums"]), test_mode=True)
        # VQVAE hard-codes the ImageNet encoder/decoder shape; a small bundle has its own, so those two are rebuilt.
        dd = dict(dropout=q["dropout"], ch=q["ch"], z_channels=q["z_channels"], in_channels=q["in_channels"], ch_mult=tuple(q["ch_mult"]),
                  num_res_blocks=q["num_res_blocks"], using_sa=q["using_sa"], using_mid_sa=q["using_mid_sa"])
        vae.encoder, vae.decoder = Encoder(double_z=False, **dd), Decoder(**dd)
        vae.downsample = 2 ** (len(dd["ch_mult"]) - 1)
    elif t is not None:
        # A transformer-only bundle (an imported var_d*.pth) states its tokenizer's V and Cvae in its own block; VAR
        # reads only those (and the quantizer) from the tokenizer it is given.
        vae = VQVAE(vocab_size=t["vocab_size"], z_channels=t["cvae"], v_patch_nums=tuple(t["patch_nums"]), test_mode=True)
    if t is not None:
        var = VAR(vae, num_classes=t["num_classes"], depth=t["depth"], embed_dim=t["embed_dim"], num_heads=t["num_heads"],
                  mlp_ratio=t.get("mlp_ratio", 4.0), drop_path_rate=t.get("drop_path_rate", 0.0), cond_drop_rate=t.get("cond_drop_rate", 0.1),
                  norm_eps=t.get("norm_eps", 1e-6), shared_aln=t["shared_aln"], attn_l2_norm=t["attn_l2_norm"],
                  patch_nums=tuple(t["patch_nums"]), flash_if_available=False, fused_if_available=False)
    return vae, var


def build(bundle, var_repo):
    cfg = json.load(open(os.path.join(bundle, "config.json")))
    vae, var = build_modules(cfg, var_repo)
    t = cfg["var"]

    weights = read_safetensors(os.path.join(bundle, "model.safetensors"))
    # nn.Module's own method: VQVAE's override passes `assign`, which torch before 2.1 does not know.
    torch.nn.Module.load_state_dict(vae, {k[4:]: v for k, v in weights.items() if k.startswith("vae.")}, strict=True)
    var.load_state_dict({k[4:]: v for k, v in weights.items() if k.startswith("var.")}, strict=True)
    vae.eval()
    var.eval()
    return vae, var, t


def train_rate(vae, var, t, batch, steps, repeats):
    """Steps/s of the official trainer's step (trainer.py VARTrainer.train_step, without AMP or DDP): forward, loss
    = cross-entropy per token x 1/L summed over L and averaged over B, backward, clip_grad_norm_(2), AdamW (betas 0.9,
    0.95; weight decay 0.05 on the filter_params decay group). Inputs are seeded random token pyramids, as on our side."""
    g = torch.Generator().manual_seed(1234)
    V, pns = vae.vocab_size, t["patch_nums"]
    idx = [torch.randint(0, V, (batch, pn * pn), generator=g) for pn in pns]
    gt = torch.cat(idx, 1)
    x = vae.quantize.idxBl_to_var_input(idx)
    labels = torch.arange(batch) % t["num_classes"]
    nowd = ("cls_token", "start_token", "task_token", "cfg_uncond", "pos_embed", "pos_1LC", "pos_start", "start_pos",
            "lvl_embed", "gamma", "beta", "ada_gss", "moe_bias", "scale_mul")
    decay, no_decay = [], []
    for name, p in var.named_parameters():
        (no_decay if p.ndim == 1 or name.endswith("bias") or any(k in name for k in nowd) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    L = gt.shape[1]
    var.train()

    def once():
        logits = var(labels, x)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, V), gt.view(-1), reduction="none").view(batch, L).mul(1 / L).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(var.parameters(), 2.0)
        opt.step()

    once()  # warm-up, as on our side
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            once()
        times.append(time.perf_counter() - t0)
    var.eval()
    return steps / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--var-repo", required=True, help="a checkout of github.com/FoundationVision/VAR")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cfg", type=float, required=True)
    ap.add_argument("--top-k", type=int, required=True)
    ap.add_argument("--top-p", type=float, required=True)
    ap.add_argument("--train-batch", type=int, default=64, help="0 = skip the training measurement")
    ap.add_argument("--train-steps", type=int, default=3)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    with contextlib.redirect_stdout(sys.stderr):  # the official constructors print; stdout is for the JSON
        vae, var, t = build(a.bundle, a.var_repo)
    num_classes = t["num_classes"]
    batches = [int(b) for b in a.batch_sizes.split(",")]

    def run(batch):
        # As the C# benchmark: a.images images in batches of `batch`, classes cycling over the model's classes.
        done = 0
        with torch.inference_mode():
            while done < a.images:
                b = min(batch, a.images - done)
                labels = torch.tensor([(done + i) % num_classes for i in range(b)], dtype=torch.long)
                img = var.autoregressive_infer_cfg(B=b, label_B=labels, g_seed=done, cfg=a.cfg, top_k=a.top_k, top_p=a.top_p)
                assert img.shape[0] == b
                done += b

    for b in batches:  # warm-up, as the C# side does
        run(b)
    rates = []
    for b in batches:
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            run(b)
            times.append(time.perf_counter() - t0)
        rates.append({"batch_size": b, "images_per_second": a.images / statistics.median(times)})
    training = None
    if a.train_batch > 0:
        sps = train_rate(vae, var, t, a.train_batch, a.train_steps, a.repeats)
        training = {"batch_size": a.train_batch, "steps_per_measurement": a.train_steps, "steps_per_second": sps,
                    "images_per_second": sps * a.train_batch}
    json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "batches": rates, "training": training}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
