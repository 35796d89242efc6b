#!/usr/bin/env bash
# Sampling and training speed of VarSharp against the official PyTorch code, on the same model, settings, batch sizes
# and threads,
# measured one after the other in one run (see docs/benchmarks.md). Not part of the tests or CI.
#
#   scripts/bench-reference.sh --var-repo PATH [--model DIR] [--threads N] [--repeats N] [--batch-sizes 1,8,32] [--images N]
#                              [--train-batch 64] [--train-steps 3]
#
# PATH is a checkout of https://github.com/FoundationVision/VAR (its modules are imported, never copied). The reference
# side runs on Debian's python3-torch; the script installs it, with OpenBLAS (Debian's default BLAS is the slow
# reference one), when /usr/bin/python3 cannot import torch.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

var_repo="" model="$root/models/fashion-var" threads=2 repeats=5 batches="1,8,32" images=32 train_batch=64 train_steps=3
while [ $# -gt 0 ]; do
  case "$1" in
    --var-repo) var_repo="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --batch-sizes) batches="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --train-batch) train_batch="$2"; shift 2 ;;
    --train-steps) train_steps="$2"; shift 2 ;;
    *) echo "error: unknown argument '$1'; see the top of $0." >&2; exit 2 ;;
  esac
done
if [ -z "$var_repo" ] || [ ! -f "$var_repo/models/var.py" ]; then
  echo "error: --var-repo must name a checkout of FoundationVision/VAR (a folder with models/var.py)." >&2
  exit 2
fi

if ! /usr/bin/python3 -c "import torch, numpy" 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: /usr/bin/python3 cannot import torch; install python3-torch and libopenblas0-pthread (as root) first." >&2
    exit 1
  fi
  echo "installing python3-torch and OpenBLAS (Debian packages)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-torch libopenblas0-pthread >&2
fi
blas=$(/usr/bin/python3 -c "import torch; c = torch.__config__.show(); print('generic' if 'BLAS_INFO=generic' in c else 'other')")
if [ "$blas" = generic ] && ! ldconfig -p | grep -q libopenblas; then
  echo "warning: the reference side uses Debian's reference BLAS (about 15x slower matrix products than OpenBLAS here); install libopenblas0-pthread for a fair comparison." >&2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "VarSharp: varsharp bench (settings: the model's recommended ones)..." >&2
"$root/varsharp" bench --model "$model" --threads "$threads" --repeats "$repeats" --batch-sizes "$batches" --images "$images" \
  --train-batch "$train_batch" --train-steps "$train_steps" --json "$out/varsharp.json" >&2
read -r cfg top_k top_p < <(/usr/bin/python3 -c "import json; s = json.load(open('$out/varsharp.json'))['settings']; print(s['cfg'], s['top_k'], s['top_p'])")
echo "official VAR: autoregressive_infer_cfg with cfg $cfg, top-k $top_k, top-p $top_p; training steps..." >&2
/usr/bin/python3 "$root/bench/reference/official_bench.py" --bundle "$model" --var-repo "$var_repo" --threads "$threads" \
  --repeats "$repeats" --batch-sizes "$batches" --images "$images" --cfg "$cfg" --top-k "$top_k" --top-p "$top_p" \
  --train-batch "$train_batch" --train-steps "$train_steps" \
  >"$out/official.json" 2>"$out/official.log" || { cat "$out/official.log" >&2; exit 1; }

# Parity on this model: greedy samples (top-k 1) of every class, both ways, compared pixel by pixel.
classes=$(/usr/bin/python3 -c "import json; n = json.load(open('$model/config.json'))['var']['num_classes']; print(','.join(map(str, range(n))))")
"$root/varsharp" sample --model "$model" --class "$classes" --count 2 --seed 0 --shared-rng --top-k 1 --top-p 0 --cfg "$cfg" \
  -o "$out/greedy" >/dev/null
/usr/bin/python3 "$root/bench/reference/official_parity.py" --bundle "$model" --var-repo "$var_repo" --ours "$out/greedy" \
  --threads "$threads" >"$out/parity.json" 2>>"$out/official.log" || { cat "$out/official.log" >&2; exit 1; }

/usr/bin/python3 - "$out/varsharp.json" "$out/official.json" "$out/parity.json" <<'EOF'
import json, sys
ours, ref = (json.load(open(p)) for p in sys.argv[1:3])
print(f"sampling images/s, {ours['threads']} threads; official code on torch {ref['torch']} ({ref['threads']} threads)")
print("  batch | VarSharp | official | VarSharp / official")
for a, b in zip(ours["batches"], ref["batches"]):
    assert a["batch_size"] == b["batch_size"]
    print(f"  {a['batch_size']:5} | {a['images_per_second']:8.1f} | {b['images_per_second']:8.1f} | {a['images_per_second'] / b['images_per_second']:.2f}x")
if ours.get("training") and ref.get("training"):
    a, b = ours["training"], ref["training"]
    print(f"training steps/s, batch {a['batch_size']} (forward, loss, backward, clipping, AdamW)")
    print(f"  VarSharp {a['steps_per_second']:.3f} | official {b['steps_per_second']:.3f} | VarSharp / official {a['steps_per_second'] / b['steps_per_second']:.2f}x")
p = json.load(open(sys.argv[3]))
print(f"greedy samples (top-k 1, cfg {p['cfg']}), both ways: {p['within_rounding']}/{p['images']} images equal within 8-bit rounding "
      f"(largest difference {p['max_level_difference']:.2f} levels)")
EOF
