#!/usr/bin/env bash
# Installs and builds what VarSharp needs on a fresh Debian 12 machine that has the .NET 10 SDK.
# Idempotent: a second run only re-checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v dotnet >/dev/null 2>&1; then
  echo "error: the .NET 10 SDK is required (dotnet was not found on PATH)" >&2
  exit 1
fi

# Fashion-MNIST for the tokenizer trainer (Debian's dataset-fashion-mnist, ~30 MB of idx files), only when missing.
# Not fatal: the tests do not need it (they make their own tiny idx files).
install_fashion_mnist() {
  local as_root=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || return 1
    as_root="sudo -n"
  fi
  $as_root apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 && return 0
  $as_root apt-get update -qq >/dev/null 2>&1 && $as_root apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1
}
if [ ! -d /usr/share/datasets/fashion-mnist ] && ! install_fashion_mnist; then
  echo "warning: could not install Fashion-MNIST; as root run: apt-get update && apt-get install -y dataset-fashion-mnist" >&2
fi

# Debian's Chromium for the browser end-to-end test (Playwright drives it; no browser is downloaded), only when
# missing. Not fatal: without it that one test reports itself as skipped, loudly.
install_chromium() {
  local as_root=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || return 1
    as_root="sudo -n"
  fi
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium >/dev/null 2>&1 && return 0
  $as_root apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium >/dev/null 2>&1
}
if [ ! -x /usr/bin/chromium ] && ! install_chromium; then
  echo "warning: could not install Chromium; the browser test will be skipped. As root run: apt-get update && apt-get install -y chromium" >&2
fi
# Playwright's .NET package ships its driver; it must never try to fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# NuGet packages (TorchSharp + libtorch CPU are ~0.7 GB the first time), then a Release build. The build also
# weakens libLibTorchSharp's GLIBCXX_3.4.32 need in the output folders (docs/torchsharp-glibcxx.md).
dotnet restore VarSharp.slnx --verbosity quiet
dotnet build VarSharp.slnx -c Release --no-restore --nologo --verbosity quiet -clp:ErrorsOnly
