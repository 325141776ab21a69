#!/usr/bin/env bash
# bench/run.sh [bench.py options]: the benchmark of issue 6 (confluence vs rqbit, peerflix,
# webtorrent-cli, btfs, aria2c and nginx on one local swarm). Needs root (apt, npm -g, network
# namespace, FUSE). Builds release, installs missing peers, re-runs itself inside a fresh network
# namespace that has only `lo`, brings up the repository's own swarm (tests/swarm) there, measures P1-P8, prints the table
# and writes bench/results.json. `bash bench/run.sh --help` lists the options (e.g. --no-large
# skips P8 and its 1 GiB payload, --runs N).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -B bench/bench.py "$@"
