#!/usr/bin/env bash
# bench/realswarm.sh [--profile P[,P]] [--runs N] [--factors 1.5,2] ...: the real-swarm streaming
# benchmark of issue 18 (a player over latent, capped, misbehaving seeders behind delaying proxies;
# confluence and rqbit alternating; the ideal beside them). Needs root (network namespace,
# opentracker's chroot), aria2c, opentracker and python3-libtorrent. See bench/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -B bench/realswarm/realswarm.py "$@"
