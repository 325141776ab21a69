#!/usr/bin/env python3
"""FUSE reads against HTTP reads of the same daemon (issue 18): `python3 bench/fuseread.py` (root).

Reuses bench.py's swarm, tools and checks; needs target/release/confluence (`cargo build
--release`). Re-runs itself in a fresh network namespace that has only `lo`, like bench.py.

- cold: a fresh swarm and a fresh daemon per run, `big.bin` (64 MiB) streamed to the end through
  `curl /data` or `cat <mount>/...`, every byte checked with sha256 (bench.py's P1 run). The
  measure is the transfer phase: 64 MiB / (end - first byte), MiB/s.
- warm: one daemon whose piece cache holds the whole file; `curl -o /dev/null` against
  `dd bs=128K of=/dev/null` (cat's read size), each timed by the tool itself (no process start-up).
  Before each FUSE run the kernel's page cache of the FUSE file is dropped (posix_fadvise
  DONTNEED), so every FUSE run goes through the daemon, as every HTTP request does.

Runs alternate HTTP and FUSE (which goes first alternates too), so load from other work on the
machine falls on both alike. Prints medians [min-max] and the ratio FUSE/HTTP of the medians, and
the load average at start and end. `--read-ahead-kb N` writes N to the mount's BDI read_ahead_kb
after mounting (to compare settings; the default leaves the daemon's own choice).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

MIB = B.MIB


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bdi_of(path):
    st = os.stat(path)
    return f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb"


def read_ahead(tool, kb):
    """The mount's readahead (KiB), after setting it to `kb` if given."""
    p = bdi_of(tool.mnt)
    if kb is not None:
        with open(p, "w") as f:
            f.write(str(kb))
    with open(p) as f:
        return int(f.read())


class Fuse(B.Ours):
    """The daemon with `-mount`, its readahead optionally overridden once mounted."""

    def __init__(self, ctx, kb):
        super().__init__(ctx, mount=True)
        self.kb = kb

    def start(self):
        super().start()
        self.ra = read_ahead(self, self.kb)
        return self


def cold(ctx, args):
    rates = {"http": [], "fuse": []}
    totals = {"http": [], "fuse": []}
    for r in range(args.runs):
        order = ["http", "fuse"] if r % 2 == 0 else ["fuse", "http"]
        for kind in order:
            tool = Fuse(ctx, args.read_ahead_kb) if kind == "fuse" else B.Ours(ctx)
            res, bad = B.cold_stream_run(ctx, tool, r, fuse=kind == "fuse")
            if bad:
                sys.exit(f"cold {kind} run {r + 1}: FAILED: {bad}")
            flow = 64 / (res["total"] - res["first_byte"])
            rates[kind].append(flow)
            totals[kind].append(res["total"])
            ra = f" read_ahead_kb {tool.ra}" if kind == "fuse" else ""
            B.log(f"  cold {kind} run {r + 1}: first byte {res['first_byte']:.3f}s total {res['total']:.3f}s "
                  f"flowing {flow:.0f} MiB/s{ra} (load {loadavg()})")
    return rates, totals


def dd_rate(path):
    """MiB/s of `dd bs=128K` reading `path` to /dev/null, as dd timed it."""
    r = subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=128K"], capture_output=True, text=True,
                       timeout=120, env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if r.returncode != 0:
        raise RuntimeError(f"dd: {r.stderr.strip()[-200:]}")
    m = re.search(r"^(\d+) bytes .* copied, ([0-9.e-]+) s", r.stderr, re.M)
    if not m:
        raise RuntimeError(f"dd said: {r.stderr.strip()[-200:]}")
    return int(m.group(1)), int(m.group(1)) / MIB / float(m.group(2))


def drop_page_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(ctx, args):
    name, size, sha, _ = ctx.swarm.files["single"][0]
    ctx.swarm.fresh()
    tool = Fuse(ctx, args.read_ahead_kb).start()
    try:
        tool.add("single")
        url, path = tool.url("single", 0), tool.path("single", 0)
        s = B.curl_stream(url, B.now(), B.now() + 120)  # fills the piece cache
        bad = s.check(size, sha) or B.cat_stream(path, B.now(), B.now() + 60).check(size, sha)
        if bad:
            sys.exit(f"warm: FAILED check: {bad}")
        B.curl_null(url, 60)
        rates = {"http": [], "fuse": []}
        for r in range(args.runs):
            for kind in (["http", "fuse"] if r % 2 == 0 else ["fuse", "http"]):
                if kind == "http":
                    n, t = B.curl_null(url, 60)
                    rate = n / MIB / t
                else:
                    drop_page_cache(path)
                    n, rate = dd_rate(path)
                if n != size:
                    sys.exit(f"warm {kind}: {n} bytes, want {size}")
                rates[kind].append(rate)
                B.log(f"  warm {kind} run {r + 1}: {rate:.0f} MiB/s (load {loadavg()})")
        # and the bytes are still right after all that
        bad = B.cat_stream(path, B.now(), B.now() + 60).check(size, sha)
        if bad:
            sys.exit(f"warm: FAILED check after the runs: {bad}")
        return rates, tool.ra
    finally:
        tool.stop()


def line(label, d, unit):
    """A table row: HTTP and FUSE as median [min-max], and FUSE/HTTP of the medians."""
    num = (lambda x: f"{x:.3f}") if unit == "s" else (lambda x: f"{x:.0f}")

    def cell(xs):
        return f"{num(statistics.median(xs))} [{num(min(xs))}–{num(max(xs))}]"
    ratio = statistics.median(d["fuse"]) / statistics.median(d["http"])
    return f"| {label} | {cell(d['http'])} | {cell(d['fuse'])} | {ratio:.2f}× |"


def inside(args):
    B.lo_only(args.inside, "fuseread")
    ctx = B.Ctx()
    ctx.runs = args.runs
    ctx.phases = [(k + 0.5) / args.runs for k in range(args.runs)]
    ctx.work = tempfile.mkdtemp(prefix="confluence-fuseread-")
    ctx.logs = os.path.join(ctx.work, "logs")
    os.makedirs(ctx.logs)
    ctx.swarm = B.Swarm(args.swarm_dir, large=False)
    load0 = loadavg()
    t0 = B.now()
    try:
        ctx.swarm.up()
        ctx.swarm.describe()
        out = []
        if not args.warm_only:
            c_rates, c_totals = cold(ctx, args)
            out += [line("cold: 64 MiB once flowing (first byte to end), MiB/s", c_rates, "MiB/s"),
                    line("cold: 64 MiB total from add, s", c_totals, "s")]
        w_rates, ra = warm(ctx, args)
        out.append(line("warm (piece cache): 64 MiB, MiB/s", w_rates, "MiB/s"))
    finally:
        B.cleanup()
        ctx.swarm.down()
        shutil.rmtree(ctx.work, ignore_errors=True)
    B.log(f"\nconfluence: {B.BIN}; {args.runs} runs each, alternating; mount read_ahead_kb {ra}; "
          f"load average {load0} at start, {loadavg()} at the end; {(B.now() - t0) / 60:.1f} min\n")
    B.log("| measure | HTTP (curl /data) | FUSE (cat / dd through -mount) | FUSE/HTTP |")
    B.log("|---|---|---|---|")
    for ln in out:
        B.log(ln)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="runs of each kind (default 7)")
    ap.add_argument("--read-ahead-kb", type=int, default=None,
                    help="write this to the mount's BDI read_ahead_kb after mounting")
    ap.add_argument("--warm-only", action="store_true", help="skip the cold runs")
    ap.add_argument("--bin", default=B.BIN, help="the confluence binary (default: target/release/confluence)")
    ap.add_argument("--swarm-dir", default="/tmp/confluence-fuseread-swarm")
    ap.add_argument("--inside", help=argparse.SUPPRESS)
    args = ap.parse_args()
    B.BIN = args.bin
    if args.inside:
        sys.exit(inside(args))
    if os.geteuid() != 0:
        sys.exit("fuseread: needs root (unshare --net, FUSE mounts)")
    if not os.path.exists(B.BIN):
        sys.exit(f"fuseread: {B.BIN} missing: cargo build --release")
    B.reexec_in_netns(__file__, {})


if __name__ == "__main__":
    main()
