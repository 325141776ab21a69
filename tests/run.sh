#!/usr/bin/env bash
# tests/run.sh [cargo test args...]: every test of the workspace, against the local swarm of
# tests/swarm (its tools are installed on first use: aria2c, opentracker, ffmpeg; needs root for apt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HARNESS=${CONFLUENCE_HARNESS:-$PWD/tests/swarm/swarm.sh}

[[ -f $HARNESS ]] || { echo "tests/run.sh: harness not found at $HARNESS (set CONFLUENCE_HARNESS)" >&2; exit 1; }

missing=()
for tool in aria2c opentracker python3 flock; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${HARNESS_MEDIA:-1} != 0 ]] && ! command -v ffmpeg >/dev/null; then missing+=(ffmpeg); fi
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "tests/run.sh: missing test dependencies: ${missing[*]}." >&2
    echo "tests/run.sh: installing them needs root; run: sudo bash $HARNESS deps  (then run this again)" >&2
    exit 1
  fi
  echo "tests/run.sh: installing test dependencies: ${missing[*]}" >&2
  bash "$HARNESS" deps
fi

# --no-fail-fast: one failing test binary does not hide the others' results.
exec cargo test --workspace --no-fail-fast "$@"
