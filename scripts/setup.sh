#!/usr/bin/env bash
# Installs and builds what VarSharp needs on a fresh Debian 12 machine that has the .NET 10 SDK.
# Idempotent: a second run only re-checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v dotnet >/dev/null 2>&1; then
  echo "error: the .NET 10 SDK is required (dotnet was not found on PATH)" >&2
  exit 1
fi

# NuGet packages (TorchSharp + libtorch CPU are ~0.7 GB the first time), then a Release build. The build also
# weakens libLibTorchSharp's GLIBCXX_3.4.32 need in the output folders (docs/torchsharp-glibcxx.md).
dotnet restore VarSharp.slnx --verbosity quiet
dotnet build VarSharp.slnx -c Release --no-restore --nologo --verbosity quiet -clp:ErrorsOnly
