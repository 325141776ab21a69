#!/usr/bin/env bash
# tests/run.sh [cargo test args...]: every test of the workspace, against the local swarm of
# tests/swarm; what tests need from Debian (tests/deps.txt) is installed on first use (root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HARNESS=${CONFLUENCE_HARNESS:-$PWD/tests/swarm/swarm.sh}

[[ -f $HARNESS ]] || { echo "tests/run.sh: harness not found at $HARNESS (set CONFLUENCE_HARNESS)" >&2; exit 1; }

command -v python3 >/dev/null || { echo "tests/run.sh: python3 is missing" >&2; exit 1; }
# tests/deps.txt: <debian package> <command or path that shows it is installed>.
missing=()
while read -r pkg probe _; do
  [[ -z $pkg || $pkg == \#* ]] && continue
  command -v "$probe" >/dev/null 2>&1 || [[ -e $probe ]] || missing+=("$pkg")
done <tests/deps.txt
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "tests/run.sh: missing test dependencies (Debian packages): ${missing[*]}." >&2
    echo "tests/run.sh: installing them needs root: sudo apt-get install ${missing[*]}  (then run this again)" >&2
    exit 1
  fi
  echo "tests/run.sh: installing test dependencies: ${missing[*]}" >&2
  log=$(mktemp)
  if ! { apt-get install -y -q "${missing[@]}" >"$log" 2>&1 ||
    { apt-get update -q >>"$log" 2>&1 && apt-get install -y -q "${missing[@]}" >>"$log" 2>&1; }; }; then
    echo "tests/run.sh: apt-get install ${missing[*]} failed: $(tail -n 3 "$log")" >&2
    exit 1
  fi
  rm -f "$log"
fi

# --no-fail-fast: one failing test binary does not hide the others' results.
exec cargo test --workspace --no-fail-fast "$@"
