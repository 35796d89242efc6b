#!/usr/bin/env bash
# Checks `varsharp export` with PyTorch itself (see the README's `export`): every golden case under ../shared/golden
# and the bundled model are exported; torch.load(weights_only=True) must read each file, the official modules (from a
# checkout of FoundationVision/VAR, --var-repo) must take them with strict key matching, and a golden case's export
# must equal, tensor for tensor, the weights_vae.pth / weights_var.pth the official code wrote. Not part of the tests
# or CI (it needs Debian's python3-torch, which it installs when missing).
#
#   scripts/check-pytorch-export.sh [--var-repo PATH] [--golden DIR] [--model DIR ...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

var_repo="" golden="$root/../shared/golden" models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --var-repo) var_repo="$2"; shift 2 ;;
    --golden) golden="$2"; shift 2 ;;
    --model) models+=("$2"); shift 2 ;;
    *) echo "error: unknown argument '$1'; see the top of $0." >&2; exit 2 ;;
  esac
done
[ ${#models[@]} -gt 0 ] || models=("$root/models/fashion-var")

if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: /usr/bin/python3 cannot import torch; install python3-torch (as root) first." >&2
    exit 1
  fi
  echo "installing python3-torch (Debian package)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-torch >&2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
repo_args=()
[ -z "$var_repo" ] || repo_args=(--var-repo "$var_repo")
n=0
check() { # bundle, extra args...
  local bundle="$1"; shift
  n=$((n + 1))
  echo "$bundle"
  "$root/varsharp" export --model "$bundle" --output "$out/$n" >/dev/null
  /usr/bin/python3 "$root/bench/reference/check_export.py" --export "$out/$n" --bundle "$bundle" ${repo_args[@]+"${repo_args[@]}"} "$@"
}
if [ -d "$golden" ]; then
  for case_dir in "$golden"/*/; do
    case_dir="${case_dir%/}"
    [ -f "$case_dir/config.json" ] && [ -f "$case_dir/weights.safetensors" ] || continue
    refs=()
    [ ! -f "$case_dir/weights_vae.pth" ] || refs+=(--reference-vae "$case_dir/weights_vae.pth")
    [ ! -f "$case_dir/weights_var.pth" ] || refs+=(--reference-var "$case_dir/weights_var.pth")
    check "$case_dir" ${refs[@]+"${refs[@]}"}
  done
else
  echo "note: no golden cases at $golden; checking the models only" >&2
fi
for m in "${models[@]}"; do check "$m"; done
echo "all $n exports read by torch $( /usr/bin/python3 -c 'import torch; print(torch.__version__)' )"
