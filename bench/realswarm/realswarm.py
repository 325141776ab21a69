#!/usr/bin/env python3
"""The real-swarm streaming benchmark of issue 18: playback over a latent, capped, misbehaving
swarm, confluence and rqbit alternating, against the ideal. Run it as `bash bench/realswarm.sh`
(root); `--help` lists the options.

1. outside: check the release binary (build it unless --no-build) and find rqbit, then re-exec
   inside a fresh network namespace (`unshare --net`) with only `lo` up, as bench/run.sh does.
2. inside: write the payload (256 MiB of seeded random bytes; with --media a movie at each
   profile's bitrate, media.py) and its corrupt copy, the client's torrent (announcing
   127.0.0.1:6969) and the seeders' (no tracker); start opentracker. For each profile
   (profiles.py): libtorrent seeders (seeders.py, Debian's /usr/bin/python3) and aria2c seeders
   on 127.0.2.N, a delaying proxy each on 127.0.1.N (proxy.py) that announces itself; then
   `--runs` rounds, each playing the file once with every client (order alternating), a new
   client process and data dir each time, with the player of player.py or, for the `-mpv`
   clients, with mpv itself (mpvplayer.py).
3. print the table with the ideal beside each client and the load average, write
   bench/realswarm-results.json.

Process handling, HTTP and namespace helpers come from bench/bench.py: every process started is
stopped by its pid (process group), every wait is bounded.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import bench  # noqa: E402 - bench/bench.py: Proc, cleanup, http helpers, Ours, Rqbit
import media  # noqa: E402
import mpvplayer  # noqa: E402
import report  # noqa: E402
import player  # noqa: E402
import profiles as pf  # noqa: E402
from bench import Proc, clean_env, log, now  # noqa: E402

TRACKER = "http://127.0.0.1:6969/announce"
NAME = "movie.mkv"
RESULTS = os.path.join(os.path.dirname(HERE), "realswarm-results.json")
SYS_PY = "/usr/bin/python3"  # has python3-libtorrent; the pyenv python3 on PATH has not
CACHE = os.path.join(bench.TARGET_DIR, "bench-cache")  # --media's movies
# client name -> (the streaming server, who plays its URL: player.py or mpv)
CLIENTS = {"confluence": (bench.Ours, "player"), "rqbit": (bench.Rqbit, "player"),
           "peerflix": (bench.Peerflix, "player"),
           "confluence-mpv": (bench.Ours, "mpv"), "rqbit-mpv": (bench.Rqbit, "mpv"),
           "peerflix-mpv": (bench.Peerflix, "mpv"),
           # the whole file downloaded at once through the client's HTTP (throughput, not playback)
           "confluence-full": (bench.Ours, "full"), "rqbit-full": (bench.Rqbit, "full")}
# the peers' executables, found outside the namespace (bench.Rqbit and bench.Peerflix use ctx.exe)
PEER_EXES = {bench.Rqbit: "rqbit", bench.Peerflix: "peerflix"}


def random_pieces():
    """The random payload's pieces, each with the offset of the byte the corrupt copy flips."""
    rng = random.Random(18)
    for _ in range(pf.SIZE // pf.PIECE):
        yield rng.randbytes(pf.PIECE), rng.randrange(pf.PIECE)


def file_pieces(path):
    """A file's pieces (the last one may be short), each with the offset of the byte to flip."""
    rng = random.Random(18)
    with open(path, "rb") as f:
        while b := f.read(pf.PIECE):
            yield b, rng.randrange(len(b))


class Swarm:
    """The payload, its torrents; the interface bench.Ours/bench.Rqbit expect. The payload is
    256 MiB of random bytes, or with `movie` (media.movie()) a copy of that file."""

    def __init__(self, work, movie=None):
        self.dir, self.movie = work, movie
        self.payload = os.path.join(work, "payload", NAME)
        self.corrupt = os.path.join(work, "corrupt", NAME)
        os.makedirs(os.path.dirname(self.payload))
        os.makedirs(os.path.dirname(self.corrupt))
        hashes, self.size = [], 0
        with open(self.payload, "wb") as f, open(self.corrupt, "wb") as g:
            for b, j in file_pieces(movie["path"]) if movie else random_pieces():
                hashes.append(hashlib.sha1(b).digest())
                f.write(b)
                g.write(b[:j] + bytes([b[j] ^ 0xFF]) + b[j + 1:])
                self.size += len(b)
        info = {"name": NAME, "length": self.size, "piece length": pf.PIECE, "pieces": b"".join(hashes)}
        self.ih_hex = hashlib.sha1(bench.bencode(info)).hexdigest()
        self.client_torrent = bench.bencode({"announce": TRACKER, "info": info})
        self.seed_torrent = os.path.join(work, "seed.torrent")
        with open(self.seed_torrent, "wb") as f:
            f.write(bench.bencode({"info": info}))
        self.client_torrent_path = os.path.join(work, "client.torrent")  # peerflix takes a file
        with open(self.client_torrent_path, "wb") as f:
            f.write(self.client_torrent)
        self.ih = {"movie": self.ih_hex}
        self.files = {"movie": [(NAME, self.size, None, self.payload)]}

    def torrent_bytes(self, _key):
        return self.client_torrent

    def torrent(self, _key):
        return self.client_torrent_path


def tracker(work, ihs, logs):
    """opentracker on 127.0.0.1:6969, whitelisting the swarms' infohashes."""
    d = os.path.join(work, "tracker")
    os.makedirs(d)
    os.chmod(d, 0o755)  # opentracker chroots here and runs as nobody
    with open(os.path.join(d, "whitelist"), "w") as f:
        f.write("".join(ih + "\n" for ih in ihs))
    os.chmod(os.path.join(d, "whitelist"), 0o644)
    p = Proc("opentracker", ["opentracker", "-i", "127.0.0.1", "-p", "6969", "-P", "6969", "-d", d,
                             "-w", "whitelist"], logs, cwd=d)
    bench.wait_port(6969, now() + 10, p)
    return p


def wait_ready(proc, deadline):
    """Until the process printed `ready` (seeders.py, proxy.py) or died."""
    while now() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited: {proc.tail()}")
        if b"ready" in proc.output():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready in time: {proc.tail()}")


def start_profile(ctx, prof):
    """Seeders and their proxies for one profile; returns the processes to stop after it."""
    procs, lt_addrs, proxies = [], [], []
    for i, s in enumerate(prof["peers"], start=1):
        seed_ip, proxy_ip = f"127.0.2.{i}", f"127.0.1.{i}"
        if s["kind"] == "lt":
            lt_addrs.append(f"{seed_ip}:6881")
        else:
            d = os.path.dirname(ctx.swarm.corrupt if s["kind"] == "corrupt" else ctx.swarm.payload)
            procs.append(Proc(f"aria2c-{i}", [
                "aria2c", f"--interface={seed_ip}", "--listen-port=6881", "--disable-ipv6=true",
                "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                "--seed-ratio=0.0", "--bt-max-peers=0", "--bt-seed-unverified=true", "--check-integrity=false",
                "--auto-file-renaming=false", "--console-log-level=warn", "--summary-interval=0",
                "--show-console-readout=false", f"--dir={d}", ctx.swarm.seed_torrent], ctx.logs))
        proxies.append({"ip": proxy_ip, "port": 6881, "upstream_ip": seed_ip, "upstream_port": 6881,
                        "delay_ms": s["delay_ms"], "rate": s["rate"],
                        "silent_after": s.get("silent_after"), "reset_after": s.get("reset_after")})
    if lt_addrs:
        lt = Proc("seeders", [SYS_PY, "-B", os.path.join(HERE, "seeders.py"), ctx.swarm.seed_torrent,
                              os.path.dirname(ctx.swarm.payload), *lt_addrs], ctx.logs)
        procs.append(lt)
        wait_ready(lt, now() + 90)
    for i, s in enumerate(prof["peers"], start=1):
        if s["kind"] != "lt":
            bench.wait_port(6881, now() + 30, next(p for p in procs if p.name == f"aria2c-{i}"), host=f"127.0.2.{i}")
    cfg = os.path.join(ctx.work, "proxy.json")
    with open(cfg, "w") as f:
        json.dump({"tracker": TRACKER, "info_hash": ctx.swarm.ih_hex, "client_cap": prof.get("client_cap"),
                   "proxies": proxies}, f)
    px = Proc("proxy", [sys.executable, "-B", os.path.join(HERE, "proxy.py"), cfg], ctx.logs)
    procs.append(px)
    wait_ready(px, now() + 30)
    return procs


def play(ctx, client, how, bitrate):
    """Presses play (t0): adds the torrent, then player.py or mpv plays its file's URL."""
    def add():
        client.add("movie")
        return client.url("movie", 0)

    if how == "full":
        t0 = now()
        return player.full_read(add(), ctx.swarm.payload, ctx.swarm.size, t0, t0 + ctx.timeout)
    if how == "mpv":
        mpv = mpvplayer.MpvPlayer(ctx.logs)  # open before play is pressed
        t0 = now()
        return mpv.run(add, t0, t0 + ctx.timeout)
    t0 = now()
    url = add()
    return player.Player(ctx.swarm.payload, ctx.swarm.size, bitrate, t0 + ctx.timeout).run(url, t0)


def one_run(ctx, client_name, bitrate):
    server, how = CLIENTS[client_name]
    client = server(ctx).start()
    try:
        return play(ctx, client, how, bitrate)
    finally:
        client.stop()
        for d in os.listdir(ctx.work):  # the client's download (up to 256 MiB a run)
            if d.startswith(("ours-", "rqbit-", "peerflix-")):
                shutil.rmtree(os.path.join(ctx.work, d), ignore_errors=True)


def payload_facts(swarm):
    if not swarm.movie:
        return {"kind": "random", "size": swarm.size}
    m = swarm.movie
    return {"kind": "media", "file": os.path.basename(m["path"]), "size": m["size"],
            "duration_s": m["duration_s"], "bitrate_MiBps": m["bitrate"] / pf.MIB, "ffmpeg": m["ffmpeg"]}


def measure_profile(ctx, name, factor, swarm):
    ctx.swarm = swarm
    prof = pf.PROFILES[name]
    cap = pf.capacity(prof)
    bitrate = swarm.movie["bitrate"] if swarm.movie else cap / factor  # a movie's is its own
    ideal_start, ideal_seek = pf.ideal(prof, bitrate, player.HEADER, player.INDEX, player.STARTUP_SECS,
                                       player.SEEK_AT, size=swarm.size)
    key = f"{name} @ capacity/{factor:g}"
    row = {"profile": name, "about": prof["about"], "capacity_MiBps": cap / pf.MIB,
           "bitrate_MiBps": bitrate / pf.MIB, "rtt_ms": pf.rtt(prof) * 1000, "payload": payload_facts(swarm),
           "ideal": {"startup_s": ideal_start, "seek_s": ideal_seek}, "tools": {}}
    log(f"== {key}: capacity {cap / pf.MIB:.2f} MiB/s, bitrate {bitrate / pf.MIB:.2f} MiB/s, "
        f"ideal startup {ideal_start:.2f} s, seek {ideal_seek:.2f} s")
    procs = start_profile(ctx, prof)
    try:
        for r in range(ctx.runs):
            order = ctx.clients if r % 2 == 0 else list(reversed(ctx.clients))
            for c in order:
                res = row["tools"].setdefault(c, {"runs": [], "failures": []})
                try:
                    out = one_run(ctx, c, bitrate)
                    res["runs"].append(out)
                    log(f"  run {r + 1} {c}: {report.one_run(out, cap)}")
                except Exception as e:  # noqa: BLE001 - a failed run is reported, never a number
                    res["failures"].append(str(e)[:300])
                    log(f"  run {r + 1} {c}: FAILED: {str(e)[:300]}")
    finally:
        for p in reversed(procs):
            p.stop(grace=5)
    return key, row


def make_swarms(ctx, plan, cache):
    """{(profile, factor): Swarm}: one random payload for all, or (with `cache`, --media) a movie
    at each one's bitrate, made by media.py or taken from the cache."""
    if not cache:
        log(f"writing the payload ({pf.SIZE // pf.MIB} MiB) and its corrupt copy under {ctx.work}")
        swarm = Swarm(os.path.join(ctx.work, "swarm"))
        return {k: swarm for k in plan}
    swarms = {}
    for i, (name, factor) in enumerate(plan):
        bitrate = pf.capacity(pf.PROFILES[name]) / factor
        movie = media.movie(cache, bitrate, media.secs_for(bitrate))
        log(f"{name} @ capacity/{factor:g}: {os.path.basename(movie['path'])}, {movie['duration_s']:.0f} s, "
            f"{movie['size'] / pf.MIB:.0f} MiB, {movie['bitrate'] / pf.MIB:.2f} MiB/s; copying it and its "
            f"corrupt copy under {ctx.work}")
        swarms[(name, factor)] = Swarm(os.path.join(ctx.work, f"swarm-{i}"), movie)
    return swarms


def wants_mpv(args):
    return any(CLIENTS[c][1] == "mpv" for c in args.clients.split(","))


def find_rqbit(args):
    for c in (args.rqbit, shutil.which("rqbit", path=clean_env()["PATH"]),
              os.path.join(bench.ROOT, "target-rqbit", "inst", "bin", "rqbit")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def outside(args):
    if os.geteuid() != 0:
        sys.exit("realswarm: needs root (unshare --net, opentracker's chroot)")
    tools = ["aria2c", "opentracker", "unshare", "ip"] + (["ffmpeg", "ffprobe"] if args.media else [])
    tools += ["mpv"] if wants_mpv(args) else []
    for tool in tools:
        if not shutil.which(tool, path=clean_env()["PATH"] + ":/usr/sbin:/sbin"):
            sys.exit(f"realswarm: {tool} is not installed")
    r = subprocess.run([SYS_PY, "-c", "import libtorrent"], capture_output=True)
    if r.returncode:
        sys.exit("realswarm: python3-libtorrent is not installed for /usr/bin/python3 (apt-get install python3-libtorrent)")
    if not args.no_build:
        log("cargo build --release --bin confluence")
        if subprocess.run(["cargo", "build", "--release", "--bin", "confluence"], cwd=bench.ROOT,
                          env=clean_env()).returncode:
            sys.exit("realswarm: cargo build --release failed")
    if not os.path.exists(bench.BIN):
        sys.exit(f"realswarm: {bench.BIN} missing")
    state = {"rqbit": find_rqbit(args), "peerflix": shutil.which("peerflix", path=clean_env()["PATH"])}
    if not state["rqbit"] and {"rqbit", "rqbit-mpv"} & set(args.clients.split(",")):
        log("rqbit not found (--rqbit PATH, PATH, or target-rqbit/inst/bin): measured without it")
    if not state["peerflix"] and {"peerflix", "peerflix-mpv"} & set(args.clients.split(",")):
        log("peerflix not found (npm install -g --ignore-scripts peerflix): measured without it")
    bench.reexec_in_netns(__file__, state)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def inside(args):
    state = bench.lo_only(args.inside, "realswarm")
    ctx = bench.Ctx()
    ctx.runs, ctx.timeout = args.runs, args.timeout
    ctx.exe = {"rqbit": state["rqbit"], "peerflix": state.get("peerflix")}
    ctx.work = tempfile.mkdtemp(prefix="realswarm-")
    ctx.logs = os.path.join(ctx.work, "logs")
    os.makedirs(ctx.logs)
    ctx.clients = [c for c in args.clients.split(",")
                   if CLIENTS[c][0] not in PEER_EXES or ctx.exe[PEER_EXES[CLIENTS[c][0]]]]
    names = args.profile.split(",") if args.profile else list(pf.PROFILES)
    plan = [(name, float(x)) for name in names for x in args.factors.split(",")]

    def on_signal(sig, _frm):
        raise KeyboardInterrupt(f"signal {sig}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rows, load0, t0 = {}, loadavg(), now()
    try:
        swarms = make_swarms(ctx, plan, args.cache_dir if args.media else None)
        tracker(ctx.work, sorted({s.ih_hex for s in swarms.values()}), ctx.logs)
        for name, factor in plan:
            key, row = measure_profile(ctx, name, factor, swarms[(name, factor)])
            rows[key] = row
    finally:
        bench.cleanup()
        if args.keep:
            log(f"kept {ctx.work}")
        else:
            shutil.rmtree(ctx.work, ignore_errors=True)
    out = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": ctx.runs,
           "load_start": load0, "load_end": loadavg(), "minutes": (now() - t0) / 60,
           "clients": ctx.clients, "payload": "media" if args.media else "random", "rows": rows}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    log("")
    log(report.table(rows))
    log("")
    log(report.versus(rows))
    if full := report.full(rows):
        log("\n" + full)
    fails = report.failures(rows)
    if fails:
        log("\nfailed runs:\n" + fails)
    log(f"\nload average (1/5/15 min) at start {load0}, at end {out['load_end']}; {out['minutes']:.0f} min; "
        f"written to {args.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", help=f"comma-separated, of: {', '.join(pf.PROFILES)} (default: all)")
    ap.add_argument("--runs", type=int, default=5, help="rounds per profile, each client once a round (default 5)")
    ap.add_argument("--factors", default="1.5", help="bitrate = capacity / factor; comma-separated (default 1.5)")
    ap.add_argument("--clients", default="confluence,rqbit",
                    help=f"comma-separated, of: {', '.join(CLIENTS)} (default: confluence,rqbit); the -mpv ones "
                         "play with mpv instead of player.py and imply --media")
    ap.add_argument("--media", action="store_true",
                    help="a playable movie (media.py) at each profile's bitrate instead of random bytes")
    ap.add_argument("--cache-dir", default=CACHE, help=f"where --media keeps its movies (default {CACHE})")
    ap.add_argument("--rqbit", help="path of the rqbit binary (default: PATH, then target-rqbit/inst/bin)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds a run may take (default 120)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/confluence as it is")
    ap.add_argument("--bin", help="the confluence binary to measure (implies --no-build; default target/release/confluence)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs) after the run")
    ap.add_argument("--out", default=RESULTS, help=f"results JSON (default {RESULTS})")
    ap.add_argument("--inside", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.profile and not set(args.profile.split(",")) <= set(pf.PROFILES):
        sys.exit(f"realswarm: unknown profile {args.profile!r}; known: {', '.join(pf.PROFILES)}")
    if not set(args.clients.split(",")) <= set(CLIENTS):
        sys.exit(f"realswarm: unknown client in {args.clients!r}; known: {', '.join(CLIENTS)}")
    if wants_mpv(args):
        args.media = True  # mpv needs something to play
    args.cache_dir = os.path.abspath(args.cache_dir)
    if args.bin:
        args.no_build, bench.BIN = True, os.path.abspath(args.bin)
    if args.inside:
        inside(args)
    else:
        outside(args)


if __name__ == "__main__":
    main()
