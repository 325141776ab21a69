#!/usr/bin/env python3
"""The benchmark of issue 6: confluence side by side with the tools users pick instead.

Run it as `bash bench/run.sh` (root). Stdlib only. Phases:

1. outside: `cargo build --release`, install the peers that are missing (rqbit from crates.io,
   webtorrent-cli and peerflix from npm with --ignore-scripts, btfs/nginx/fuse3 and the harness
   deps from Debian). A peer that cannot be installed is skipped with the reason.
   Also builds `bench/relay`, not a peer but the floor of a streaming client (one connection,
   pipelined, optionally SHA-1 + store), measured in P1 beside the others.
2. re-exec inside a fresh network namespace (`unshare --net`) where only `lo` is up, so no tool
   can reach anything but loopback whatever its DHT/LSD/UPnP defaults; bring up the harness
   swarm there (its own DIR), measure every row, tear everything down, print the table, write
   bench/results.json (and bench/results.md, the same table in Markdown).

Every cold run uses a fresh client (new process, new data dir) and a fresh swarm (tracker and
seeder restarted, so no stale peers and no warm seeder connections). Every byte a tool returns
is checked with sha256 against the payload; a wrong or short answer is a failed run, never a
number. Every wait is bounded; every process started here is stopped by its pid (its process
group, which it leads), every mount unmounted.
"""

import argparse
import hashlib
import json
import os
import platform
import random
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.environ.get("CONFLUENCE_HARNESS") or os.path.join(ROOT, "tests", "swarm", "swarm.sh")
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
BIN = os.path.join(TARGET_DIR, "release", "confluence")
RELAY = os.path.join(TARGET_DIR, "release", "relay")  # bench/relay: the floor client of P1
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
SEED1 = ("127.0.0.2", 6881)

TOOLS = ["confluence", "confluence-fuse", "confluence-dav", "confluence-dlna", "rqbit", "peerflix", "webtorrent", "btfs", "aria2c", "nginx",
         "relay", "relay+sha1+store"]
PEERS = ["rqbit", "peerflix", "webtorrent", "btfs", "aria2c"]


def log(*a):
    print(*a, flush=True)


def now():
    return time.monotonic()


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.setdefault("HOME", "/root")
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":" + os.path.expanduser("~/.cargo/bin")
    if extra:
        env.update(extra)
    return env


# ----------------------------------------------------------------------------------------------
# Processes and mounts (stopped by pid, never by name)

PROCS = []
MOUNTS = set()


class Proc:
    def __init__(self, name, argv, logdir, env=None, cwd=None):
        self.name = name
        self.logpath = os.path.join(logdir, f"{name}.{len(PROCS)}.log")
        with open(self.logpath, "ab") as lf:
            # The path can repeat (PROCS shrinks as processes stop): this process's output
            # starts here.
            self.log_from = lf.seek(0, os.SEEK_END)
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                      start_new_session=True, env=env or clean_env(), cwd=cwd)
        self.pid = self.p.pid
        PROCS.append(self)

    def alive(self):
        return self.p.poll() is None

    def output(self):
        """What this process has written so far (not an earlier one's under the same path)."""
        with open(self.logpath, "rb") as f:
            f.seek(self.log_from)
            return f.read()

    def tail(self, n=3):
        try:
            lines = self.output().decode("utf-8", "replace").strip().splitlines()
            return " | ".join(lines[-n:])
        except OSError:
            return ""

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, grace=10.0):
        """Signal the process group this process leads (pgid == our child's pid)."""
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(grace) is None:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(5)
        # stragglers of its group (e.g. nginx workers, node helpers)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self in PROCS:
            PROCS.remove(self)


def mounted(path):
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == path for line in f)
    except OSError:
        return False


def unmount(path):
    for argv in (["fusermount3", "-u", path], ["fusermount", "-u", path], ["umount", path], ["umount", "-l", path]):
        if not mounted(path):
            break
        if shutil.which(argv[0]):
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
    MOUNTS.discard(path)


def cleanup():
    for p in list(reversed(PROCS)):
        try:
            p.stop(grace=5)
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            log(f"cleanup: {p.name} pid {p.pid}: {e}")
    for m in list(MOUNTS):
        unmount(m)


# ----------------------------------------------------------------------------------------------
# Small helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline, proc=None, host="127.0.0.1"):
    while now() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (rc {proc.p.returncode}): {proc.tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listening on {host}:{port} in time")


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, timeout=30, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with _opener.open(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_http(url, deadline, proc=None):
    last = None
    while now() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (rc {proc.p.returncode}): {proc.tail()}")
        try:
            st, _ = http("GET", url, timeout=2)
            if st == 200:
                return
        except Exception as e:  # noqa: BLE001
            last = e
        time.sleep(0.02)
    raise RuntimeError(f"{url} not ready in time ({last})")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


class RssMonitor:
    """Peak RSS of a process and its descendants: VmRSS polled every 50 ms, and VmHWM."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    @staticmethod
    def _kb(pid, key):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _tree(self):
        out, todo = [], [self.pid]
        while todo and len(out) < 200:
            p = todo.pop()
            out.append(p)
            try:
                for tid in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{tid}/children") as f:
                        todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
        return out

    def sample(self):
        self.peak = max(self.peak, sum(self._kb(p, "VmRSS:") for p in self._tree()) * 1024)

    def _run(self):
        while not self._stop.wait(0.05):
            self.sample()

    def stop(self):
        """Call while the process is still alive (VmHWM goes with it). Returns the peak in bytes."""
        self.sample()
        self.peak = max(self.peak, self._kb(self.pid, "VmHWM:") * 1024)
        self._stop.set()
        self.t.join(2)
        return self.peak


class Stream:
    """Reads a pipe to its end with a deadline: sha256, size, first byte, first MiB, end, gaps."""

    def __init__(self, proc, t0, deadline):
        self.proc, self.t0, self.deadline = proc, t0, deadline
        self.h, self.n = hashlib.sha256(), 0
        self.t_first = self.t_mib = self.t_end = None
        self.max_gap, self.err = 0.0, None

    def run(self):
        fd = self.proc.stdout.fileno()
        last = None
        try:
            while True:
                left = self.deadline - now()
                if left <= 0:
                    self.err = "timed out"
                    self.stall_tail = now() - (last or self.t0)
                    break
                r, _, _ = select.select([fd], [], [], min(left, 1.0))
                if not r:
                    continue
                b = os.read(fd, MIB)
                t = now()
                if not b:
                    break
                if last is not None:
                    self.max_gap = max(self.max_gap, t - last)
                last = t
                if self.t_first is None:
                    self.t_first = t
                self.n += len(b)
                if self.t_mib is None and self.n >= MIB:
                    self.t_mib = t
                self.h.update(b)
            self.t_end = last
        finally:
            if self.err is not None and self.proc.poll() is None:
                self.proc.kill()  # deadline: stop waiting
            try:
                rc = self.proc.wait(10)  # at EOF the reader exits on its own
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(10)
                self.err = self.err or "reader did not exit after EOF"

            err = self.proc.stderr.read().decode("utf-8", "replace").strip() if self.proc.stderr else ""
            if self.err is None and rc != 0:
                self.err = f"exit {rc}: {err[-200:]}"
        return self

    def check(self, size, sha):
        if self.err:
            return self.err
        if self.n != size:
            return f"short/long answer: {self.n} bytes, want {size}"
        if self.h.hexdigest() != sha:
            return "WRONG BYTES (sha256 mismatch)"
        return None


def curl_stream(url, t0, deadline, extra=()):
    p = subprocess.Popen(["curl", "-sS", "--fail", "--max-time", str(int(max(1, deadline - now())) + 1),
                          *extra, "-o", "-", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=clean_env(), start_new_session=True)
    return Stream(p, t0, deadline).run()


def cat_stream(path, t0, deadline):
    p = subprocess.Popen(["cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    return Stream(p, t0, deadline).run()


def curl_null(url, timeout):
    """(bytes, seconds) of one download to /dev/null, as curl measured it."""
    r = subprocess.run(["curl", "-sS", "--fail", "--max-time", str(timeout), "-o", "/dev/null", "-w",
                        "%{size_download} %{time_total}", url], capture_output=True, env=clean_env(),
                       timeout=timeout + 10)
    if r.returncode != 0:
        raise RuntimeError(f"curl exit {r.returncode}: {r.stderr.decode()[-200:]}")
    n, t = r.stdout.decode().split()
    return int(n), float(t)


# ----------------------------------------------------------------------------------------------
# Bencode (for the synthetic idle torrents)

def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, str):
        return bencode(v.encode())
    if isinstance(v, list):
        return b"l" + b"".join(map(bencode, v)) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def idle_torrent(i, rng):
    info = {"name": f"idle-{i:04d}.bin", "length": 64 * MIB, "piece length": 256 * KIB,
            "pieces": rng.randbytes(20 * 256)}
    raw = bencode({"announce": "http://127.0.0.1:6969/announce", "info": info})
    return raw, hashlib.sha1(bencode(info)).hexdigest()


# ----------------------------------------------------------------------------------------------
# The swarm

class Swarm:
    def __init__(self, d, large):
        self.dir, self.large = d, large
        self.files = {}  # key -> list of (display path, size, sha256, abs path)

    def env(self):
        return clean_env({"HARNESS_MEDIA": "0", "HARNESS_LARGE": "1" if self.large else "0"})

    def sh(self, *args, timeout=900):
        r = subprocess.run(["bash", HARNESS, *args], capture_output=True, text=True, env=self.env(),
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"swarm.sh {' '.join(args)}: {(r.stderr or r.stdout).strip()[-300:]}")
        return r.stdout

    def up(self):
        self.sh("up", self.dir)
        self.ih = {}
        with open(os.path.join(self.dir, "infohashes")) as f:
            for line in f:
                k, v = line.split()
                self.ih[k] = v

    def fresh(self):
        """A fresh tracker and seeder: no stale peers, no warm connections."""
        self.sh("down", self.dir)
        self.up()
        # On a loaded machine the seeder answers only seconds after `up` returns: wait for its
        # first answer, so that a cold run measures the client, not the seeder's start-up.
        try:
            probe_once(self.ih["single"], full=False)
        except Exception as e:  # noqa: BLE001
            log(f"  seeder settle probe failed: {e}")

    def down(self):
        try:
            self.sh("down", self.dir, timeout=120)
        except Exception as e:  # noqa: BLE001
            log(f"swarm down: {e}")

    def torrent(self, key):
        return os.path.join(self.dir, "torrents", key + ".torrent")

    def torrent_bytes(self, key):
        with open(self.torrent(key), "rb") as f:
            return f.read()

    def payload(self, rel):
        return os.path.join(self.dir, "payload", rel)

    def describe(self):
        pay = os.path.join(self.dir, "payload")
        self.files["single"] = [("big.bin", 64 * MIB, sha256_file(self.payload("big.bin")), self.payload("big.bin"))]
        many = sorted(os.listdir(os.path.join(pay, "many")))
        self.files["many"] = [(n, os.path.getsize(os.path.join(pay, "many", n)),
                               sha256_file(os.path.join(pay, "many", n)), os.path.join(pay, "many", n)) for n in many]

    def describe_large(self):
        p = self.payload("large.bin")
        self.files["large"] = [("large.bin", os.path.getsize(p), sha256_file(p), p)]


def probe_once(ih_hex, t0=None, full=True):
    """One peer-wire connection to seed1 from 127.0.0.8: seconds from t0 (default: connect) to the
    seeder's handshake answer and to its bitfield/have-all, then to unchoke and to the first MiB
    on this one ideal connection (blocks pipelined 256 deep), and to all 64 MiB of big.bin on it."""
    ih = bytes.fromhex(ih_hex)
    t0 = t0 or now()
    s = socket.create_connection(SEED1, timeout=10, source_address=("127.0.0.8", 0))
    try:
        s.settimeout(10)
        reserved = bytearray(8)
        reserved[5] |= 0x10
        s.sendall(b"\x13BitTorrent protocol" + bytes(reserved) + ih + b"-BN0001-" + os.urandom(6).hex().encode())
        if _recvn(s, 68)[28:48] != ih:
            raise RuntimeError("floor probe: wrong infohash in handshake")
        t_hs = now()
        if not full:  # only the seeder's answer: no download beside the client's
            while True:
                mid, _ = _message(s)
                if mid in (5, 14):
                    return {"handshake": t_hs - t0, "bitfield": now() - t0}
        s.sendall(struct.pack(">IB", 1, 2))  # interested
        t_bf = t_unchoke = None
        while t_bf is None or t_unchoke is None:
            mid, _ = _message(s)
            if mid in (5, 14) and t_bf is None:
                t_bf = now()
            if mid == 1:
                t_unchoke = now()
        # Every block of big.bin (64 MiB, 256 pieces of 256 KiB), 256 requests kept in flight.
        blocks = [(p, b) for p in range(256) for b in range(0, 256 * KIB, 16 * KIB)]
        depth, sent, got, t_mib = 256, 0, 0, None

        def send_upto(k):
            nonlocal sent
            s.sendall(b"".join(struct.pack(">IBIII", 13, 6, p, b, 16 * KIB) for p, b in blocks[sent:k]))
            sent = k

        send_upto(depth)
        while got < 64 * MIB:
            mid, body = _message(s)
            if mid == 7:
                got += len(body) - 8
                if t_mib is None and got >= MIB:
                    t_mib = now()
                if sent < len(blocks):
                    send_upto(min(len(blocks), got // (16 * KIB) + depth))
        t_all = now()
    finally:
        s.close()
    return {"handshake": t_hs - t0, "bitfield": t_bf - t0, "unchoke": t_unchoke - t0, "first_mib": t_mib - t0,
            "all_64mib": t_all - t0, "transfer_64mib": t_all - t_unchoke}


def floor_probe(swarm, n, rng):
    """The seeder's handshake floor. aria2c answers a new connection only on its ~1 s tick, so
    the answer comes 0.1-1 s after connect depending on the phase: probe at random moments."""
    out = []
    for _ in range(n):
        time.sleep(rng.uniform(0.3, 1.3))
        try:
            out.append(probe_once(swarm.ih["single"]))
        except Exception as e:  # noqa: BLE001
            log(f"  floor probe failed: {e}")
    return out


class RunFloor:
    """This run's floor: a probe connection made at t0 beside the client's own (same seeder tick)."""

    def __init__(self, ih_hex, t0):
        self.value = None
        self.t = threading.Thread(target=self._run, args=(ih_hex, t0), daemon=True)
        self.t.start()

    def _run(self, ih_hex, t0):
        try:
            self.value = probe_once(ih_hex, t0, full=False)["bitfield"]
        except Exception:  # noqa: BLE001
            self.value = None

    def get(self):
        self.t.join(15)
        return self.value


def _recvn(s, n):
    buf = bytearray()
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            raise ConnectionError("peer closed")
        buf += c
    return bytes(buf)


def _message(s):
    while True:
        n = int.from_bytes(_recvn(s, 4), "big")
        if n:
            b = _recvn(s, n)
            return b[0], b[1:]


# ----------------------------------------------------------------------------------------------
# The tools. Each cold client: start() (fresh state), add(key) (the clock runs), then url()/path().

class Ours:
    name = "confluence"

    def __init__(self, ctx, mount=False, data_dir=None, extra=()):
        self.ctx, self.mount_wanted, self.extra = ctx, mount, list(extra)
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="ours-", dir=ctx.work)
        self.mnt = None

    def start(self):
        self.port = free_port()
        argv = [BIN, f"-addr=127.0.0.1:{self.port}", "-torrentAddr=127.0.0.1:0", "-dht=false", "-pex=false",
                f"-dataDir={self.data_dir}", *self.extra]
        if self.mount_wanted:
            self.mnt = tempfile.mkdtemp(prefix="mnt-", dir=self.ctx.work)
            argv.append(f"-mount={self.mnt}")
            MOUNTS.add(self.mnt)
        self.proc = Proc("confluence", argv, self.ctx.logs,
                         env=clean_env({"RUST_LOG": os.environ.get("BENCH_RUST_LOG", "warn")}))
        self.pid = self.proc.pid
        wait_http(f"http://127.0.0.1:{self.port}/health", now() + 30, self.proc)
        if self.mnt:
            deadline = now() + 15
            while not mounted(self.mnt):
                if now() > deadline or not self.proc.alive():
                    raise RuntimeError(f"-mount did not mount: {self.proc.tail()}")
                time.sleep(0.02)
        return self

    def add(self, key):
        st, body = http("POST", f"http://127.0.0.1:{self.port}/metainfo", self.ctx.swarm.torrent_bytes(key))
        if st != 200 or body.decode().strip() != self.ctx.swarm.ih[key]:
            raise RuntimeError(f"POST /metainfo: {st} {body[:100]!r}")

    def url(self, key, i):
        path = self.ctx.swarm.files[key][i][0]
        return f"http://127.0.0.1:{self.port}/data?ih={self.ctx.swarm.ih[key]}&path={urllib.parse.quote(path)}"

    def path(self, key, i):
        return os.path.join(self.mnt, self.ctx.swarm.ih[key], self.ctx.swarm.files[key][i][0])

    def stop(self):
        self.proc.stop(signal.SIGTERM, grace=15)
        if self.mnt:
            unmount(self.mnt)


class OursDav(Ours):
    """The same daemon, the file streamed from the WebDAV share (`/dav/<ih>/<path>`)."""
    name = "confluence-dav"

    def url(self, key, i):
        path = self.ctx.swarm.files[key][i][0]
        return f"http://127.0.0.1:{self.port}/dav/{self.ctx.swarm.ih[key]}/{urllib.parse.quote(path, safe='/')}"


class OursDlna(Ours):
    """The same daemon, the file streamed from the URL a DLNA item's `<res>` names
    (`/data/infohash/<ih>/<path>`, the path form), as a TV would."""
    name = "confluence-dlna"

    def url(self, key, i):
        path = self.ctx.swarm.files[key][i][0]
        return f"http://127.0.0.1:{self.port}/data/infohash/{self.ctx.swarm.ih[key]}/{urllib.parse.quote(path, safe='/')}"


class Rqbit:
    name = "rqbit"

    def __init__(self, ctx):
        self.ctx = ctx

    def start(self):
        self.port, self.lport = free_port(), free_port()
        out = tempfile.mkdtemp(prefix="rqbit-", dir=self.ctx.work)
        argv = [self.ctx.exe["rqbit"], "--disable-dht", "--disable-dht-persistence", "--disable-lsd",
                "--disable-upnp-port-forward", "--http-api-listen-addr", f"127.0.0.1:{self.port}",
                "--listen-port", str(self.lport), "--listen-ip", "127.0.0.1",
                "server", "start", "--disable-persistence", out]
        self.proc = Proc("rqbit", argv, self.ctx.logs,
                         env=clean_env({"XDG_CACHE_HOME": out, "XDG_CONFIG_HOME": out, "XDG_DATA_HOME": out}))
        self.pid = self.proc.pid
        wait_http(f"http://127.0.0.1:{self.port}/", now() + 30, self.proc)
        return self

    def add(self, key):
        st, body = http("POST", f"http://127.0.0.1:{self.port}/torrents?overwrite=true",
                        self.ctx.swarm.torrent_bytes(key), timeout=60)
        self.id = json.loads(body)["id"]

    def url(self, key, i):
        return f"http://127.0.0.1:{self.port}/torrents/{self.id}/stream/{i}"

    def stop(self):
        self.proc.stop(signal.SIGTERM, grace=10)


class Relay:
    """Not a peer: bench/relay, the floor of a streaming client (one connection to seed1, every
    block pipelined in order, each piece forwarded as soon as it is complete; with `verify` also
    SHA-1 checked and written to a file first, the least a correct client that keeps what it
    streamed must do). Its P1 rows show how close the seeder and this box let any client get."""

    def __init__(self, ctx, verify):
        self.ctx, self.verify = ctx, verify
        self.name = "relay+sha1+store" if verify else "relay"

    def start(self):
        return self

    def add(self, key):
        self.port = free_port()
        argv = [RELAY, "--listen", f"127.0.0.1:{self.port}", "--seeder", "%s:%d" % SEED1,
                "--torrent", self.ctx.swarm.torrent(key)]
        if self.verify:
            argv += ["--verify", "--store", os.path.join(tempfile.mkdtemp(prefix="relay-", dir=self.ctx.work), "data")]
        self.proc = Proc(self.name, argv, self.ctx.logs)
        self.pid = self.proc.pid

    def url(self, key, i):
        wait_port(self.port, now() + 10, self.proc)
        return f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.proc.stop(signal.SIGTERM, grace=5)


class Peerflix:
    """One process per torrent and file (-i); its HTTP server serves that file at /."""
    name = "peerflix"

    def __init__(self, ctx):
        self.ctx = ctx

    def start(self):
        return self

    def add(self, key, i=0):
        self.port = free_port()
        d = tempfile.mkdtemp(prefix="peerflix-", dir=self.ctx.work)
        argv = [self.ctx.exe["peerflix"], self.ctx.swarm.torrent(key), "-p", str(self.port), "-h", "127.0.0.1",
                "-f", d, "-x", str(free_port()), "-i", str(i), "-q"]
        self.proc = Proc("peerflix", argv, self.ctx.logs, env=clean_env({"HOME": d}))
        self.pid = self.proc.pid

    def url(self, key, i):
        wait_port(self.port, now() + 60, self.proc)
        return f"http://127.0.0.1:{self.port}/"

    def stop(self):
        self.proc.stop(signal.SIGTERM, grace=5)


class Webtorrent:
    name = "webtorrent"

    def __init__(self, ctx):
        self.ctx = ctx

    def start(self):
        return self

    def add(self, key, i=0):
        self.port = free_port()
        d = tempfile.mkdtemp(prefix="webtorrent-", dir=self.ctx.work)
        argv = [self.ctx.exe["webtorrent"], "download", self.ctx.swarm.torrent(key), "--port", str(self.port),
                "--out", d, "--select", str(i), "--torrent-port", str(free_port()), "--keep-seeding", "--quiet"]
        self.proc = Proc("webtorrent", argv, self.ctx.logs, env=clean_env({"HOME": d}))
        self.pid = self.proc.pid

    def url(self, key, i):
        wait_port(self.port, now() + 60, self.proc)
        name = "big.bin" if key == "single" else f"{key}/{self.ctx.swarm.files[key][i][0]}"
        return f"http://127.0.0.1:{self.port}/webtorrent/{self.ctx.swarm.ih[key]}/{urllib.parse.quote(name)}"

    def stop(self):
        self.proc.stop(signal.SIGTERM, grace=5)


class Btfs:
    name = "btfs"

    def __init__(self, ctx):
        self.ctx = ctx

    def start(self):
        return self

    def add(self, key, i=0):
        self.mnt = tempfile.mkdtemp(prefix="btfs-mnt-", dir=self.ctx.work)
        d = tempfile.mkdtemp(prefix="btfs-data-", dir=self.ctx.work)
        port = free_port()
        MOUNTS.add(self.mnt)
        argv = [self.ctx.exe["btfs"], "-f", f"--data-directory={d}", f"--min-port={port}", f"--max-port={port}",
                self.ctx.swarm.torrent(key), self.mnt]
        self.proc = Proc("btfs", argv, self.ctx.logs)
        self.pid = self.proc.pid

    def path(self, key, i):
        rel = "big.bin" if key == "single" else f"{key}/{self.ctx.swarm.files[key][i][0]}"
        p = os.path.join(self.mnt, rel)
        deadline = now() + 60
        while not (mounted(self.mnt) and os.path.exists(p)):
            if now() > deadline or not self.proc.alive():
                raise RuntimeError(f"btfs did not show {rel}: {self.proc.tail()}")
            time.sleep(0.01)
        return p

    def stop(self):
        self.proc.stop(signal.SIGTERM, grace=10)
        unmount(self.mnt)


# ----------------------------------------------------------------------------------------------
# Results

class Results:
    def __init__(self):
        self.rows = {}      # measure -> tool -> {"values": [...], "failures": [...], "unit": ...}
        self.skipped = {}   # tool -> reason
        self.notes = []

    def add(self, measure, tool, value=None, failure=None, unit="s"):
        r = self.rows.setdefault(measure, {}).setdefault(tool, {"values": [], "failures": [], "unit": unit})
        if failure:
            r["failures"].append(failure)
        elif value is not None:
            r["values"].append(value)

    def stat(self, measure, tool):
        r = self.rows.get(measure, {}).get(tool)
        if not r or not r["values"] or r["failures"]:
            return None
        v = r["values"]
        return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


class Ctx:
    pass


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "s":
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if unit == "MiB/s":
        return f"{v:.0f}"
    if unit == "MiB":
        return f"{v:.1f}"
    if unit == "ms":
        return f"{v:.1f}"
    return f"{v:.3g}"


# ----------------------------------------------------------------------------------------------
# The rows

def skip_reason(ctx, tool):
    return ctx.res.skipped.get(tool)


SETTLE = 1.5  # after a swarm restart the seeder is still settling (hashing its payload, announcing)


def phase_wait(ctx, t_ready, r):
    """Start run r at the same offset after the swarm restart for every tool, so that every tool
    meets the same phase of the seeder's ~1 s accept tick (which starts with the seeder). The
    offsets are stratified over 0-1 s, so the runs sample the tick evenly."""
    time.sleep(max(0.0, t_ready + SETTLE + ctx.phases[r % len(ctx.phases)] - now()))


def cold_stream_run(ctx, tool, r, key="single", i=0, fuse=False, timeout=120):
    """One cold run: fresh swarm, fresh client, add, stream file i to the end (sha256 checked).
    Returns (result dict or None, failure or None)."""
    ctx.swarm.fresh()
    t_ready = now()
    name, size, sha, _ = ctx.swarm.files[key][i]
    c = None
    mon = None
    try:
        c = tool.start()
        if getattr(tool, "pid", None):
            mon = RssMonitor(tool.pid)
        phase_wait(ctx, t_ready, r)
        t0 = now()
        fl = RunFloor(ctx.swarm.ih[key], t0)
        tool.add(key)
        if mon is None:
            mon = RssMonitor(tool.pid)
        deadline = t0 + timeout
        if fuse:
            s = cat_stream(tool.path(key, i), t0, deadline)
        else:
            s = curl_stream(tool.url(key, i), t0, deadline)
        peak = mon.stop() if (mon and tool.proc.alive()) else None
        bad = s.check(size, sha)
        if bad:
            return None, bad
        return {"total": s.t_end - t0, "first_byte": s.t_first - t0, "first_mib": s.t_mib - t0,
                "rss": peak, "max_gap": s.max_gap, "floor": fl.get()}, None
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"
    finally:
        if c is not None or tool is not None:
            try:
                tool.stop()
            except Exception:  # noqa: BLE001
                pass


def aria2_run(ctx, r, key="single", timeout=120):
    ctx.swarm.fresh()
    t_ready = now()
    name, size, sha, _ = ctx.swarm.files[key][0]
    d = tempfile.mkdtemp(prefix="aria2-", dir=ctx.work)
    phase_wait(ctx, t_ready, r)
    argv = [ctx.exe["aria2c"], f"--dir={d}", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
            "--enable-peer-exchange=false", "--seed-time=0", f"--listen-port={free_port()}", "--disable-ipv6=true",
            "--console-log-level=warn", "--summary-interval=0", "--show-console-readout=false",
            "--follow-torrent=false", ctx.swarm.torrent(key)]
    t0 = now()
    p = Proc("aria2c", argv, ctx.logs)
    mon = RssMonitor(p.pid)
    rc = p.wait(timeout)
    t1 = now()
    peak = mon.stop()
    try:
        if rc is None:
            return None, "timed out"
        if rc != 0:
            return None, f"aria2c exit {rc}: {p.tail()}"
        got = os.path.join(d, name)
        if os.path.getsize(got) != size or sha256_file(got) != sha:
            return None, "WRONG BYTES (sha256 mismatch)"
        return {"total": t1 - t0, "rss": peak}, None
    finally:
        p.stop()
        shutil.rmtree(d, ignore_errors=True)


def row_p1(ctx):
    """P1 (time), P2 (first byte / first MiB) and P7 (peak RSS) from the same cold runs; P4 FUSE."""
    log("\n== P1/P2/P7: cold 64 MiB stream of `single` (first byte, first MiB, total, peak RSS)")
    makers = {"confluence": lambda: Ours(ctx), "rqbit": lambda: Rqbit(ctx), "peerflix": lambda: Peerflix(ctx),
              "webtorrent": lambda: Webtorrent(ctx), "btfs": lambda: Btfs(ctx)}
    if not skip_reason(ctx, "confluence-fuse"):
        makers["confluence-fuse"] = lambda: Ours(ctx, mount=True)
    if not skip_reason(ctx, "confluence-dav"):
        makers["confluence-dav"] = lambda: OursDav(ctx)
    if not skip_reason(ctx, "confluence-dlna"):
        makers["confluence-dlna"] = lambda: OursDlna(ctx)
    if os.path.exists(RELAY):
        makers["relay"] = lambda: Relay(ctx, verify=False)
        makers["relay+sha1+store"] = lambda: Relay(ctx, verify=True)
    else:
        log(f"  relay: skipped ({RELAY} not built)")
    for tool, mk in makers.items():
        if skip_reason(ctx, tool):
            log(f"  {tool}: skipped ({skip_reason(ctx, tool)})")
            continue
        fuse = tool in ("btfs", "confluence-fuse")
        for r in range(ctx.runs):
            res, bad = cold_stream_run(ctx, mk(), r, fuse=fuse)
            if bad:
                log(f"  {tool} run {r + 1}: FAILED: {bad}")
                ctx.res.add("P1", tool, failure=bad)
                if r == 0 and ("timed out" in bad or "exited" in bad or "not" in bad) and r + 1 < ctx.runs:
                    # a tool that cannot do it at all once is not retried for minutes
                    if tool in ("webtorrent",):
                        break
                continue
            fl = res["floor"]
            log(f"  {tool} run {r + 1}: total {res['total']:.3f}s first byte {res['first_byte']:.3f}s "
                f"first MiB {res['first_mib']:.3f}s (seeder answered at {fl if fl is None else round(fl, 3)}s) "
                f"rss {res['rss'] / MIB if res['rss'] else 0:.1f} MiB")
            if fl is not None:
                ctx.res.add("P2-over", tool, res["first_mib"] - fl)
                ctx.res.add("P1-over", tool, res["total"] - fl)
                ctx.res.add("P1-answer", tool, fl)
            ctx.res.add("P1", tool, res["total"])
            if res["total"] > res["first_byte"]:
                ctx.res.add("P1-flow", tool, 64 / (res["total"] - res["first_byte"]), unit="MiB/s")
            ctx.res.add("P2-byte", tool, res["first_byte"])
            ctx.res.add("P2-mib", tool, res["first_mib"])
            if res["rss"] and not tool.startswith("relay"):
                ctx.res.add("P7", tool, res["rss"] / MIB, unit="MiB")
    if skip_reason(ctx, "aria2c"):
        log(f"  aria2c: skipped ({skip_reason(ctx, 'aria2c')})")
        return
    for r in range(ctx.runs):
        res, bad = aria2_run(ctx, r)
        if bad:
            log(f"  aria2c run {r + 1}: FAILED: {bad}")
            ctx.res.add("P1", "aria2c", failure=bad)
            continue
        log(f"  aria2c run {r + 1}: full download {res['total']:.3f}s rss {res['rss'] / MIB:.1f} MiB")
        ctx.res.add("P1", "aria2c", res["total"])
        ctx.res.add("P7", "aria2c", res["rss"] / MIB, unit="MiB")


def nginx_start(ctx):
    port = free_port()
    pre = tempfile.mkdtemp(prefix="nginx-", dir=ctx.work)
    for sub in ("logs", "tmp"):
        os.makedirs(os.path.join(pre, sub))
    conf = os.path.join(pre, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""user root;
worker_processes auto;
pid {pre}/nginx.pid;
error_log {pre}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {pre}/tmp; proxy_temp_path {pre}/tmp; fastcgi_temp_path {pre}/tmp;
  uwsgi_temp_path {pre}/tmp; scgi_temp_path {pre}/tmp;
  types {{ }}
  default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {ctx.swarm.dir}/payload; }}
}}
""")
    p = Proc("nginx", [ctx.exe["nginx"], "-p", pre, "-c", conf, "-g", "daemon off;"], ctx.logs)
    wait_port(port, now() + 10, p)
    return p, f"http://127.0.0.1:{port}/big.bin"


def warm_measure(ctx, tool, url, label):
    """Throughput of cached bytes: 1 client and 8 parallel clients; bytes checked once each way."""
    name, size, sha, _ = ctx.swarm.files["single"][0]
    s = curl_stream(url, now(), now() + 60)
    bad = s.check(size, sha)
    if bad:
        ctx.res.add("P3-1", tool, failure=bad)
        ctx.res.add("P3-8", tool, failure=bad)
        log(f"  {label}: FAILED check: {bad}")
        return
    curl_null(url, 60)  # one untimed pass: page cache and connection paths warm for everyone
    for r in range(ctx.runs):
        try:
            n, t = curl_null(url, 60)
            if n != size:
                raise RuntimeError(f"{n} bytes, want {size}")
            ctx.res.add("P3-1", tool, n / MIB / t, unit="MiB/s")
            results = [None] * 8

            def one(k):
                try:
                    results[k] = curl_null(url, 120)
                except Exception as e:  # noqa: BLE001
                    results[k] = e
            t0 = now()
            th = [threading.Thread(target=one, args=(k,)) for k in range(8)]
            for x in th:
                x.start()
            for x in th:
                x.join(180)
            wall = now() - t0
            errs = [x for x in results if not isinstance(x, tuple) or x[0] != size]
            if errs:
                raise RuntimeError(f"8 clients: {errs[0]}")
            ctx.res.add("P3-8", tool, 8 * size / MIB / wall, unit="MiB/s")
            log(f"  {label} run {r + 1}: 1 client {n / MIB / t:.0f} MiB/s, 8 clients {8 * size / MIB / wall:.0f} MiB/s")
        except Exception as e:  # noqa: BLE001
            ctx.res.add("P3-1", tool, failure=str(e))
            log(f"  {label} run {r + 1}: FAILED: {e}")
    # the bytes of the last 8-client pass are as good as the first? check one more hashed read
    s = curl_stream(url, now(), now() + 60)
    bad = s.check(size, sha)
    if bad:
        ctx.res.add("P3-1", tool, failure="after runs: " + bad)


def row_p3(ctx):
    log("\n== P3: warm /data throughput (cached) vs nginx from disk, 1 and 8 clients")
    ctx.swarm.fresh()
    o = Ours(ctx)
    try:
        o.start()
        o.add("single")
        url = o.url("single", 0)
        s = curl_stream(url, now(), now() + 120)  # fill the cache
        bad = s.check(64 * MIB, ctx.swarm.files["single"][0][2])
        if bad:
            raise RuntimeError("filling the cache: " + bad)
        warm_measure(ctx, "confluence", url, "confluence")
    except Exception as e:  # noqa: BLE001
        ctx.res.add("P3-1", "confluence", failure=str(e))
        log(f"  confluence: FAILED: {e}")
    finally:
        o.stop()
    if skip_reason(ctx, "nginx"):
        log(f"  nginx: skipped ({skip_reason(ctx, 'nginx')})")
        return
    p = None
    try:
        p, url = nginx_start(ctx)
        warm_measure(ctx, "nginx", url, "nginx")
    except Exception as e:  # noqa: BLE001
        ctx.res.add("P3-1", "nginx", failure=str(e))
        log(f"  nginx: FAILED: {e}")
    finally:
        if p:
            p.stop(signal.SIGTERM)


def p5_offsets():
    rng = random.Random(42)
    return [rng.randrange(0, 64 * MIB - MIB) for _ in range(10)]


def row_p5(ctx):
    log("\n== P5: cold random 1 MiB reads at 10 fixed offsets (seed 42): HTTP Range / FUSE pread")
    offsets = p5_offsets()
    with open(ctx.swarm.payload("big.bin"), "rb") as f:
        want = [hashlib.sha256(os.pread(f.fileno(), MIB, o)).hexdigest() for o in offsets]
    makers = {"confluence": (lambda: Ours(ctx), False), "confluence-fuse": (lambda: Ours(ctx, mount=True), True),
              "rqbit": (lambda: Rqbit(ctx), False), "peerflix": (lambda: Peerflix(ctx), False),
              "webtorrent": (lambda: Webtorrent(ctx), False), "btfs": (lambda: Btfs(ctx), True)}
    for tool, (mk, fuse) in makers.items():
        if skip_reason(ctx, tool):
            log(f"  {tool}: skipped ({skip_reason(ctx, tool)})")
            continue
        for r in range(ctx.runs):
            ctx.swarm.fresh()
            t_ready = now()
            t = mk()
            lat, first, bad = [], None, None
            fl = None
            try:
                t.start()
                phase_wait(ctx, t_ready, r)
                t0 = now()
                fl = RunFloor(ctx.swarm.ih["single"], t0)
                t.add("single")
                if fuse:
                    fd = os.open(t.path("single", 0), os.O_RDONLY)
                    try:
                        for k, o in enumerate(offsets):
                            a = now()
                            b = b""
                            while len(b) < MIB:  # FUSE may return short reads
                                chunk = os.pread(fd, MIB - len(b), o + len(b))
                                if not chunk:
                                    break
                                b += chunk
                            e = now()
                            if hashlib.sha256(b).hexdigest() != want[k]:
                                bad = f"WRONG BYTES at offset {o} ({len(b)} bytes)"
                                break
                            lat.append(e - a)
                            if first is None:
                                first = e - t0
                            if e - t0 > 120:
                                bad = "timed out"
                                break
                    finally:
                        os.close(fd)
                else:
                    url = t.url("single", 0)
                    for k, o in enumerate(offsets):
                        a = now()
                        s = curl_stream(url, a, t0 + 120, extra=("-r", f"{o}-{o + MIB - 1}"))
                        e = now()
                        if s.err or s.n != MIB or s.h.hexdigest() != want[k]:
                            bad = s.err or f"WRONG BYTES at offset {o} ({s.n} bytes)"
                            break
                        lat.append(e - a)
                        if first is None:
                            first = e - t0
            except Exception as ex:  # noqa: BLE001
                bad = f"{type(ex).__name__}: {ex}"
            finally:
                try:
                    t.stop()
                except Exception:  # noqa: BLE001
                    pass
            if bad:
                log(f"  {tool} run {r + 1}: FAILED: {bad}")
                ctx.res.add("P5-median", tool, failure=bad)
                ctx.res.add("P5-first", tool, failure=bad)
                if tool == "webtorrent":
                    break
                continue
            med = statistics.median(lat)
            flv = fl.get() if fl else None
            log(f"  {tool} run {r + 1}: first read done {first:.3f}s after add (seeder answered at "
                f"{flv if flv is None else round(flv, 3)}s), median read {med * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms")
            if flv is not None:
                ctx.res.add("P5-first-over", tool, first - flv)
            ctx.res.add("P5-median", tool, med)
            ctx.res.add("P5-first", tool, first)


def many_run(ctx, tool, n, timeout, r):
    """n concurrent cold streams of distinct files of `many`."""
    ctx.swarm.fresh()
    t_ready = now()
    try:
        tool.start()
        phase_wait(ctx, t_ready, r)
        t0 = now()
        tool.add("many")
        return wave(ctx, tool, "many", n, t0, timeout)
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"
    finally:
        try:
            tool.stop()
        except Exception:  # noqa: BLE001
            pass


def wave(ctx, tool, key, n, t0, timeout):
    """n concurrent streams of the first n files of `key` (added already): aggregate MiB/s from
    the first byte of any to the end of all, and the longest stall."""
    files = ctx.swarm.files[key][:n]
    streams = [None] * n
    urls = [tool.url(key, i) for i in range(n)]

    def go(i):
        streams[i] = curl_stream(urls[i], t0, t0 + timeout)
    th = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for x in th:
        x.start()
    for x in th:
        x.join(timeout + 30)
    bads = []
    for i, s in enumerate(streams):
        if s is None:
            bads.append(f"stream {i}: did not finish")
            continue
        bad = s.check(files[i][1], files[i][2])
        if bad:
            bads.append(f"{files[i][0]}: {bad}")
    firsts = [s.t_first for s in streams if s and s.t_first]
    flowing = min(firsts) if firsts else None
    # longest stall: the longest gap inside any stream, or the wait of a stream's first byte
    # after the first stream flowed, or (unfinished) the time since its last byte
    stall = 0.0
    for s in streams:
        if not s:
            continue
        stall = max(stall, s.max_gap)
        if s.t_first and flowing:
            stall = max(stall, s.t_first - flowing)
        if s.err == "timed out":
            stall = max(stall, getattr(s, "stall_tail", 0.0))
    if bads:
        return {"stall": stall, "incomplete": True}, "; ".join(bads[:3]) + (f" (+{len(bads) - 3} more)" if len(bads) > 3 else "")
    end = max(s.t_end for s in streams)
    total = sum(f[1] for f in files)
    return {"agg": total / MIB / (end - flowing), "stall": stall, "first": flowing - t0, "total": end - t0}, None


def warm_waves(ctx):
    """What the consumers themselves allow: the same 32 streams, and one 64 MiB stream, served
    warm from our cache (one daemon; a cold pass fills the cache first). On a 2-core box that
    the consumers share, this bounds the cold P6 ratio whatever the daemon does."""
    o = Ours(ctx)
    try:
        ctx.swarm.fresh()
        o.start()
        o.add("many")
        o.add("single")
        for key, n in (("many", 32), ("single", 1)):
            _, bad = wave(ctx, o, key, n, now(), 120)
            if bad:
                raise RuntimeError(f"filling the cache: {bad}")
        for r in range(ctx.runs):
            for key, n, m in (("many", 32, "P6-warm-32"), ("single", 1, "P6-warm-1")):
                res, bad = wave(ctx, o, key, n, now(), 60)
                if bad:
                    raise RuntimeError(bad)
                log(f"  confluence warm {key} x{n} run {r + 1}: aggregate {res['agg']:.0f} MiB/s once flowing")
                ctx.res.add(m, "confluence", res["agg"], unit="MiB/s")
    except Exception as e:  # noqa: BLE001
        log(f"  warm waves: FAILED: {e}")
        ctx.res.add("P6-warm-32", "confluence", failure=str(e))
    finally:
        o.stop()


def row_p6(ctx):
    log("\n== P6: `many`: 1, 8 and 32 concurrent cold streams of distinct files (aggregate once flowing, longest stall)")
    for tool, mk in (("confluence", lambda: Ours(ctx)), ("rqbit", lambda: Rqbit(ctx))):
        if skip_reason(ctx, tool):
            log(f"  {tool}: skipped ({skip_reason(ctx, tool)})")
            continue
        for n in (1, 8, 32):
            incomplete = 0
            for r in range(ctx.runs):
                res, bad = many_run(ctx, mk(), n, timeout=45, r=r)
                if bad:
                    log(f"  {tool} x{n} run {r + 1}: FAILED: {bad}"
                        + (f" (longest stall >= {res['stall']:.1f}s)" if res else ""))
                    ctx.res.add(f"P6-agg-{n}", tool, failure=bad)
                    if res:
                        ctx.res.add(f"P6-stall-{n}", tool, failure=f"incomplete; stall >= {res['stall']:.1f}s")
                    incomplete += 1
                    if incomplete >= 2:
                        log(f"  {tool} x{n}: {incomplete} failed runs; not repeating")
                        break
                    continue
                log(f"  {tool} x{n} run {r + 1}: aggregate {res['agg']:.0f} MiB/s once flowing, longest stall "
                    f"{res['stall']:.3f}s, first byte {res['first']:.3f}s, all done {res['total']:.3f}s")
                ctx.res.add(f"P6-agg-{n}", tool, res["agg"], unit="MiB/s")
                ctx.res.add(f"P6-stall-{n}", tool, res["stall"])
    if not skip_reason(ctx, "confluence"):
        warm_waves(ctx)


def row_p7_idle(ctx):
    log("\n== P7: our peak RSS streaming 64 MiB with 1000 idle torrents posted")
    rng = random.Random(7)
    torrents = [idle_torrent(i, rng) for i in range(1000)]
    for r in range(ctx.runs):
        ctx.swarm.fresh()
        o = Ours(ctx)
        try:
            o.start()
            mon = RssMonitor(o.pid)
            a = now()
            errs = []

            def post(chunk):
                for raw, ih in chunk:
                    try:
                        st, body = http("POST", f"http://127.0.0.1:{o.port}/metainfo", raw, timeout=60)
                        if body.decode().strip() != ih:
                            errs.append(f"POST answered {body[:60]!r}")
                    except Exception as e:  # noqa: BLE001
                        errs.append(str(e))
            th = [threading.Thread(target=post, args=(torrents[k::4],)) for k in range(4)]
            for x in th:
                x.start()
            for x in th:
                x.join(300)
            posted = now() - a
            if errs:
                raise RuntimeError(f"{len(errs)} posts failed: {errs[0]}")
            time.sleep(1)
            mon.sample()
            idle = mon.peak
            t0 = now()
            o.add("single")
            s = curl_stream(o.url("single", 0), t0, t0 + 120)
            peak = mon.stop()
            bad = s.check(64 * MIB, ctx.swarm.files["single"][0][2])
            if bad:
                raise RuntimeError(bad)
            log(f"  run {r + 1}: 1000 posts in {posted:.1f}s, RSS idle {idle / MIB:.1f} MiB, peak while streaming "
                f"{peak / MIB:.1f} MiB, stream {s.t_end - t0:.3f}s")
            ctx.res.add("P7-idle1000", "confluence", peak / MIB, unit="MiB")
        except Exception as e:  # noqa: BLE001
            log(f"  run {r + 1}: FAILED: {e}")
            ctx.res.add("P7-idle1000", "confluence", failure=str(e))
        finally:
            o.stop()


def row_p8(ctx):
    log("\n== P8: 1 GiB `large` fully cached, daemon restarted: time to first byte (no re-hash)")
    ctx.swarm.large = True
    ctx.swarm.sh("down", ctx.swarm.dir)
    t = now()
    ctx.swarm.up()
    ctx.swarm.describe_large()
    log(f"  swarm with `large` up in {now() - t:.1f}s")
    name, size, sha, path = ctx.swarm.files["large"][0]
    data_dir = tempfile.mkdtemp(prefix="ours-p8-", dir=ctx.work)
    o = Ours(ctx, data_dir=data_dir)
    try:
        o.start()
        t0 = now()
        o.add("large")
        s = curl_stream(o.url("large", 0), t0, t0 + 600)
        bad = s.check(size, sha)
        if bad:
            raise RuntimeError("cold download: " + bad)
        log(f"  cold 1 GiB stream: {s.t_end - t0:.1f}s ({size / MIB / (s.t_end - t0):.0f} MiB/s), sha256 ok")
        ctx.res.add("P8-cold-1GiB", "confluence", s.t_end - t0)
    except Exception as e:  # noqa: BLE001
        log(f"  FAILED: {e}")
        ctx.res.add("P8", "confluence", failure=str(e))
        return
    finally:
        o.stop()
    # Seeders off: a first byte after restart must come from the cache, not the swarm.
    ctx.swarm.sh("down", ctx.swarm.dir)
    with open(path, "rb") as f:
        head = hashlib.sha256(os.pread(f.fileno(), MIB, 0)).hexdigest()
        tail_off = size - MIB
        tail = hashlib.sha256(os.pread(f.fileno(), MIB, tail_off)).hexdigest()
    for r in range(ctx.runs):
        o = Ours(ctx, data_dir=data_dir)
        try:
            a = now()
            o.start()
            ready = now() - a
            url = o.url("large", 0)
            t0 = now()
            s = curl_stream(url, t0, t0 + 30, extra=("-r", f"0-{MIB - 1}"))
            if s.err or s.n != MIB or s.h.hexdigest() != head:
                raise RuntimeError(s.err or f"WRONG BYTES ({s.n} bytes)")
            ttfb = s.t_first - t0
            first_mib = s.t_end - t0
            t1 = now()
            s2 = curl_stream(url, t1, t1 + 30, extra=("-r", f"{tail_off}-{size - 1}"))
            if s2.err or s2.n != MIB or s2.h.hexdigest() != tail:
                raise RuntimeError(s2.err or f"WRONG BYTES at the tail ({s2.n} bytes)")
            log(f"  restart {r + 1}: listening after {ready * 1000:.0f} ms; first byte {ttfb * 1000:.1f} ms, "
                f"first MiB {first_mib * 1000:.1f} ms, last MiB {(s2.t_end - t1) * 1000:.1f} ms (no seeder running)")
            ctx.res.add("P8", "confluence", ttfb * 1000, unit="ms")
            ctx.res.add("P8-mib", "confluence", first_mib * 1000, unit="ms")
            ctx.res.add("P8-ready", "confluence", ready * 1000, unit="ms")
        except Exception as e:  # noqa: BLE001
            log(f"  restart {r + 1}: FAILED: {e}")
            ctx.res.add("P8", "confluence", failure=str(e))
        finally:
            o.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Table

MEASURES = [
    # id, label, unit, lower is better, tools
    ("P1", "P1 cold 64 MiB stream, s (aria2c: full download)", "s", True),
    ("P1-over", "P1 minus this run's seeder answer, s", "s", True),
    ("P1-flow", "P1 64 MiB once flowing (first byte to end), MiB/s", "MiB/s", False),
    ("P2-byte", "P2 cold first byte, s", "s", True),
    ("P2-mib", "P2 cold first MiB, s", "s", True),
    ("P2-over", "P2 first MiB minus this run's seeder answer, s", "s", True),
    ("P3-1", "P3 warm 1 client, MiB/s", "MiB/s", False),
    ("P3-8", "P3 warm 8 clients, MiB/s", "MiB/s", False),
    ("P5-median", "P5 cold random 1 MiB read, median, s", "s", True),
    ("P5-first", "P5 first read done (from add), s", "s", True),
    ("P5-first-over", "P5 first read minus this run's seeder answer, s", "s", True),
    ("P6-agg-1", "P6 1 stream, MiB/s", "MiB/s", False),
    ("P6-agg-8", "P6 8 streams aggregate, MiB/s", "MiB/s", False),
    ("P6-stall-8", "P6 8 streams longest stall, s", "s", True),
    ("P6-agg-32", "P6 32 streams aggregate, MiB/s", "MiB/s", False),
    ("P6-stall-32", "P6 32 streams longest stall, s", "s", True),
    ("P6-warm-32", "P6 32 streams warm (from our cache), MiB/s", "MiB/s", False),
    ("P6-warm-1", "P6 one 64 MiB stream warm (from our cache), MiB/s", "MiB/s", False),
    ("P7", "P7 peak RSS streaming 64 MiB, MiB", "MiB", True),
    ("P7-idle1000", "P7 peak RSS, 1000 idle torrents, MiB", "MiB", True),
    ("P8", "P8 restart, first byte, ms", "ms", True),
    ("P8-mib", "P8 restart, first MiB, ms", "ms", True),
]
COLS = ["confluence", "confluence-fuse", "confluence-dav", "confluence-dlna", "rqbit", "peerflix", "webtorrent", "btfs", "aria2c", "nginx",
        "relay", "relay+sha1+store"]


def cell(res, m, tool, unit):
    r = res.rows.get(m, {}).get(tool)
    if not r:
        return ""
    if r["failures"]:
        return f"FAIL {len(r['failures'])}/{len(r['failures']) + len(r['values'])}"
    st = res.stat(m, tool)
    if not st:
        return ""
    return f"{fmt(st['median'], unit)} [{fmt(st['min'], unit)}–{fmt(st['max'], unit)}]"


def best_peer(res, m, lower):
    best = None
    for t in PEERS + ["nginx"]:
        st = res.stat(m, t)
        if st and (best is None or (st["median"] < best[1] if lower else st["median"] > best[1])):
            best = (t, st["median"])
    return best


def ours_of(res, m):
    for t in ("confluence", "confluence-fuse"):
        st = res.stat(m, t)
        if st:
            return st["median"]
    return None


def table(res):
    cols = [c for c in COLS if any(c in res.rows.get(m[0], {}) for m in MEASURES)]
    head = ["measure"] + cols + ["ours / best peer"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for m, label, unit, lower in MEASURES:
        if m not in res.rows:
            continue
        row = [label] + [cell(res, m, c, unit) for c in cols]
        b, o = best_peer(res, m, lower), ours_of(res, m)
        row.append(f"{o / b[1]:.2f}× {b[0]}" if b and o and b[1] else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets(res, floor=None):
    floor = floor or {}
    floor_transfer, floor_mib = floor.get("transfer_64mib"), floor.get("mib_after_answer")
    med = lambda m, t: (res.stat(m, t) or {}).get("median")  # noqa: E731
    out = []

    def t(tid, what, value, ok, detail):
        out.append({"id": tid, "target": what, "measured": detail,
                    "value": value, "result": "n/a" if ok is None else ("PASS" if ok else "MISS")})

    def ratio(a, b):
        return a / b if a is not None and b else None
    o, rq, ar = med("P1", "confluence"), med("P1", "rqbit"), med("P1", "aria2c")
    x = ratio(o, rq)
    t("P1a", "cold 64 MiB stream <= 0.8x rqbit", x, None if x is None else x <= 0.8,
      f"{o:.3f}s vs {rq:.3f}s = {x:.2f}x" if x else "missing data")
    x = ratio(o, ar)
    t("P1b", "cold 64 MiB stream <= 0.25x aria2c", x, None if x is None else x <= 0.25,
      f"{o:.3f}s vs {ar:.3f}s = {x:.2f}x" if x else "missing data")
    answer = med("P1-answer", "confluence")
    if rq is not None and floor_transfer is not None and answer is not None:
        # What no client can beat: the runs' seeder answer plus the seeder's own 64 MiB time.
        bound = answer + floor_transfer
        t("P1a-bound", "(context) the fastest any client could be: seeder answer + 64 MiB on one ideal "
          "connection", bound, None,
          f"{bound:.3f}s (median answer {answer:.3f}s + {floor_transfer:.3f}s); 0.8x rqbit = {0.8 * rq:.3f}s"
          + (": P1a out of reach in this run" if bound > 0.8 * rq else ""))
    o, rq = med("P1-over", "confluence"), med("P1-over", "rqbit")
    x = ratio(o, rq)
    t("P1a'", "(same, each run's seeder answer subtracted) <= 0.8x rqbit", x, None if x is None else x <= 0.8,
      f"{o:.3f}s vs {rq:.3f}s = {x:.2f}x" if x else "missing data")
    # The floor client (bench/relay) in the same runs: what a client doing only the necessary
    # work (receive, SHA-1, store, forward) makes of the same seeder on the same busy box.
    fc, fr, rq1 = med("P1", "relay+sha1+store"), med("P1", "relay"), med("P1", "rqbit")
    x = ratio(fc, rq1)
    if x is not None:
        t("P1a-floor", "(context) the minimal correct client (bench/relay: SHA-1 + store + forward) vs rqbit, "
          "same runs", x, None, f"{fc:.3f}s vs {rq1:.3f}s = {x:.2f}x (bare relay, no hash or store: "
          + (f"{fr:.3f}s = {fr / rq1:.2f}x)" if fr else "n/a)"))
    fco = med("P1-over", "relay+sha1+store")
    x = ratio(o, fco)
    if x is not None:
        t("P1-vs-floor", "(context) ours vs the minimal correct client, each run's seeder answer subtracted",
          x, None, f"{o:.3f}s vs {fco:.3f}s = {x:.2f}x")
    o, rq = med("P2-mib", "confluence"), med("P2-mib", "rqbit")
    x = ratio(o, rq)
    t("P2a", "first MiB <= 0.8x rqbit", x, None if x is None else x <= 0.8,
      f"{o:.3f}s vs {rq:.3f}s = {x:.2f}x" if x else "missing data")
    answer = med("P1-answer", "confluence")
    if rq is not None and floor_mib is not None and answer is not None:
        bound = answer + floor_mib
        t("P2a-bound", "(context) the fastest any client could be: seeder answer + first MiB on one ideal "
          "connection", bound, None,
          f"{bound:.3f}s (median answer {answer:.3f}s + {floor_mib:.3f}s); 0.8x rqbit = {0.8 * rq:.3f}s"
          + (": P2a out of reach in this run" if bound > 0.8 * rq else ""))
    fc = med("P2-mib", "relay+sha1+store")
    x = ratio(fc, rq)
    if x is not None:
        t("P2a-floor", "(context) the minimal correct client's first MiB vs rqbit, same runs", x, None,
          f"{fc:.3f}s vs {rq:.3f}s = {x:.2f}x")
    d = med("P2-over", "confluence")
    t("P2b", "first MiB within 0.1 s of the seeder's handshake floor (per run)", d, None if d is None else d <= 0.1,
      f"first MiB - that run's seeder answer: +{d:.3f}s (rqbit +{med('P2-over', 'rqbit') or float('nan'):.3f}s)"
      if d is not None else "missing data")
    for n, m in (("1", "P3-1"), ("8", "P3-8")):
        o, ng = med(m, "confluence"), med(m, "nginx")
        x = ratio(o, ng)
        t(f"P3-{n}", f"warm ({n} client{'s' if n != '1' else ''}) >= 0.7x nginx", x, None if x is None else x >= 0.7,
          f"{o:.0f} vs {ng:.0f} MiB/s = {x:.2f}x" if x else "missing data")
    fu, ht, bt = med("P1", "confluence-fuse"), med("P1", "confluence"), med("P1", "btfs")
    x = ratio(ht, fu)
    t("P4a", "FUSE cat throughput >= 0.8x our HTTP", x, None if x is None else x >= 0.8,
      f"cat {fu:.3f}s vs HTTP {ht:.3f}s = {x:.2f}x" if x else "missing data")
    x = ratio(bt, fu)
    t("P4b", "FUSE cat throughput >= 5x btfs", x, None if x is None else x >= 5,
      f"cat {fu:.3f}s vs btfs {bt:.3f}s = {x:.2f}x" if x else "missing data")
    rq = med("P5-median", "rqbit")
    for tool in ("confluence", "confluence-fuse"):
        o = med("P5-median", tool)
        x = ratio(o, rq)
        t(f"P5a-{tool}", f"random 1 MiB read median ({tool}) <= rqbit's", x, None if x is None else x <= 1,
          f"{o * 1000:.0f} ms vs {rq * 1000:.0f} ms = {x:.2f}x" if x else "missing data")
        d = med("P5-first-over", tool)
        t(f"P5b-{tool}", f"first random read ({tool}) within 0.1 s of the floor (per run)", d,
          None if d is None else d <= 0.1,
          f"first read - that run's seeder answer: +{d:.3f}s (rqbit +{med('P5-first-over', 'rqbit') or float('nan'):.3f}s)"
          if d is not None else "missing data")
    one = med("P6-agg-1", "confluence")
    for n in (8, 32):
        st = med(f"P6-stall-{n}", "confluence")
        t(f"P6-stall-{n}", f"{n} streams: no stall > 2 s", st, None if st is None else st <= 2,
          f"longest stall {st:.3f}s" if st is not None else "missing data / failed runs")
        ag = med(f"P6-agg-{n}", "confluence")
        x = ratio(ag, one)
        t(f"P6-agg-{n}", f"{n} streams: aggregate >= 0.8x one stream", x, None if x is None else x >= 0.8,
          f"{ag:.0f} vs {one:.0f} MiB/s = {x:.2f}x" if x else "missing data")
        # One 4 MiB stream "once flowing" lasts 10-25 ms and starts with the request window
        # (2 MiB) already in flight: a burst. Context: the same aggregate against one long
        # stream's steady rate in the same run (P1's 64 MiB, first byte to end).
        flow = med("P1-flow", "confluence")
        x = ratio(ag, flow)
        if x is not None:
            t(f"P6-agg-{n}-steady", f"(context) {n} streams aggregate vs one 64 MiB stream once flowing (P1)",
              x, None, f"{ag:.0f} vs {flow:.0f} MiB/s = {x:.2f}x")
    w32, w1 = med("P6-warm-32", "confluence"), med("P6-warm-1", "confluence")
    x = ratio(w32, w1)
    if x is not None:
        t("P6-agg-32-warm", "(context) the consumers' own limit: 32 streams vs one 64 MiB stream, both warm "
          "from our cache", x, None, f"{w32:.0f} vs {w1:.0f} MiB/s = {x:.2f}x")
    o, rq = med("P7", "confluence"), med("P7", "rqbit")
    x = ratio(o, rq)
    t("P7a", "peak RSS streaming <= rqbit's", x, None if x is None else x <= 1,
      f"{o:.1f} vs {rq:.1f} MiB = {x:.2f}x" if x else "missing data")
    i = med("P7-idle1000", "confluence")
    t("P7b", "peak RSS with 1000 idle torrents <= 150 MiB", i, None if i is None else i <= 150,
      f"{i:.1f} MiB" if i is not None else "missing data")
    p8 = med("P8", "confluence")
    t("P8", "restart first byte <= 50 ms", p8, None if p8 is None else p8 <= 50,
      f"{p8:.1f} ms" if p8 is not None else "not run / failed")
    return out


def target_table(ts):
    lines = ["| target | measured (medians) | result |", "|---|---|---|"]
    for x in ts:
        lines.append(f"| {x['id']}: {x['target']} | {x['measured']} | {x['result']} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Outside: build and installs

def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1)}


def version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=clean_env())
        return (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 else None
    except Exception:  # noqa: BLE001
        return None


def cargo_install_running():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                a = f.read().split(b"\0")
        except OSError:
            continue
        if a and a[0].endswith(b"cargo") and b"install" in a and b"rqbit" in a:
            return int(pid)
    return None


def install(args):
    """Returns (exe, skipped): paths of the tools, and reasons for those that are not there."""
    exe, skipped = {}, {}
    apt_updated = [False]

    def apt(pkgs):
        env = clean_env({"DEBIAN_FRONTEND": "noninteractive"})
        if not apt_updated[0]:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
            apt_updated[0] = True
        r = subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], capture_output=True, text=True, env=env,
                           timeout=1200)
        return r.returncode == 0, (r.stderr or r.stdout).strip().splitlines()[-1:] if r.returncode else ""

    # harness deps and the Debian peers
    need = [p for c, p in (("aria2c", "aria2"), ("opentracker", "opentracker"), ("curl", "curl"),
                           ("unshare", "util-linux"), ("ip", "iproute2"), ("btfs", "btfs"),
                           ("nginx", "nginx-light"), ("fusermount3", "fuse3"))
            if not shutil.which(c, path=clean_env()["PATH"] + ":/usr/sbin:/sbin")]
    if need and not args.no_install:
        log(f"installing from Debian: {' '.join(need)}")
        ok, err = apt(need)
        if not ok:
            log(f"  apt-get install failed ({err}); trying one by one")
            for p in need:
                apt([p])
    path = clean_env()["PATH"] + ":/usr/sbin:/sbin"
    for c in ("aria2c", "btfs", "nginx", "curl", "unshare", "ip"):
        w = shutil.which(c, path=path)
        if w:
            exe[c] = w
        else:
            skipped[c] = "not installed (apt-get install failed or --no-install)"
    # rqbit
    w = shutil.which("rqbit", path=path)
    if not w and not args.no_install:
        pid = cargo_install_running()
        if pid:
            log(f"waiting for the running `cargo install rqbit` (pid {pid}, see /tmp/rqbit-install.log), up to 40 min")
            deadline = now() + 2400
            while cargo_install_running() and now() < deadline:
                time.sleep(10)
        w = shutil.which("rqbit", path=path)
        if not w and not cargo_install_running():
            log("cargo install rqbit --locked (about 20 min on 2 cores, once)")
            r = subprocess.run(["cargo", "install", "rqbit", "--locked"], env=clean_env(), timeout=3600,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode:
                skipped["rqbit"] = "cargo install rqbit failed: " + r.stderr.strip().splitlines()[-1]
        w = shutil.which("rqbit", path=path)
    if w:
        exe["rqbit"] = w
    else:
        skipped.setdefault("rqbit", "not installed")
    # npm peers
    for cmd, pkg in (("peerflix", "peerflix"), ("webtorrent", "webtorrent-cli")):
        w = shutil.which(cmd, path=path)
        if not w and not args.no_install and shutil.which("npm"):
            log(f"npm install -g --ignore-scripts {pkg}")
            subprocess.run(["npm", "install", "-g", "--ignore-scripts", pkg], capture_output=True, timeout=1200,
                           env=clean_env(), cwd="/tmp")
            w = shutil.which(cmd, path=path)
        if w:
            exe[cmd] = w
        else:
            skipped[cmd] = "not installed (npm missing or npm install failed)"
    # does each one start?
    for cmd, argv in (("rqbit", ["--version"]), ("peerflix", ["--version"]), ("webtorrent", ["--version"]),
                      ("btfs", ["--version"]), ("aria2c", ["--version"]), ("nginx", ["-v"])):
        if cmd not in exe:
            continue
        r = subprocess.run([exe[cmd], *argv], capture_output=True, text=True, timeout=30, env=clean_env())
        if r.returncode != 0:
            text = (r.stderr or r.stdout)
            reason = text.strip().splitlines()[-1] if text.strip() else f"exit {r.returncode}"
            for line in text.splitlines():
                if "Cannot find module" in line or "Error:" in line:
                    reason = line.strip()
                    break
            if cmd == "webtorrent" and "datachannel" in text:
                reason = ("won't start: its WebRTC native module (node-datachannel) is not built; building it "
                          "needs downloads that are not reachable here (" + reason + ")")
            skipped[cmd] = reason
            del exe[cmd]
        else:
            lines = (r.stdout + r.stderr).strip().splitlines() or [""]
            exe[cmd + "@version"] = next((ln for ln in lines if {"aria2c": "aria2"}.get(cmd, cmd) in ln.lower()), lines[0]).strip()
    return exe, skipped


def outside(args):
    if os.geteuid() != 0:
        sys.exit("bench: needs root (apt-get, npm -g, unshare --net, FUSE mounts)")
    if not os.path.exists(HARNESS):
        sys.exit(f"bench: harness not found at {HARNESS} (set CONFLUENCE_HARNESS)")
    t = now()
    if not args.no_build:
        log("cargo build --release")
        r = subprocess.run(["cargo", "build", "--release", "-p", "confluence", "-p", "confluence-bench-relay"],
                           cwd=ROOT, env=clean_env())
        if r.returncode:
            sys.exit("bench: cargo build --release failed")
    if not os.path.exists(BIN):
        sys.exit(f"bench: {BIN} missing")
    exe, skipped = install(args)
    for k, v in skipped.items():
        log(f"  {k}: skipped: {v}")
    log(f"build and installs: {now() - t:.0f}s")
    reexec_in_netns(__file__, {"exe": exe, "skipped": skipped, "prep_s": now() - t})


def reexec_in_netns(script, state):
    """Runs `script --inside <file holding state> <this run's arguments>` in a fresh network
    namespace where only `lo` exists, and exits with its status (the benchmarks' second half)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="confluence-bench-", delete=False) as f:
        json.dump(state, f)
    argv = ["unshare", "--net", "--", sys.executable, "-B", os.path.abspath(script), "--inside", f.name,
            *sys.argv[1:]]
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the inner run gets it too and cleans up
    try:
        rc = subprocess.run(argv).returncode
    finally:
        os.unlink(f.name)
    sys.exit(rc)


# ----------------------------------------------------------------------------------------------
# Inside the namespace

def lo_only(state_path, who):
    """Inside the namespace `reexec_in_netns` made: brings `lo` up, refuses to run when any other
    link is up, and returns the state the outer run handed over."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = subprocess.run(["ip", "-o", "link", "show", "up"], capture_output=True, text=True).stdout
    ups = [ln.split(":")[1].strip() for ln in links.splitlines() if ln.strip()]
    if ups != ["lo"]:
        sys.exit(f"{who}: the namespace has more than lo up: {ups}")
    with open(state_path) as f:
        return json.load(f)


def inside(args):
    state = lo_only(args.inside, "bench")
    ctx = Ctx()
    ctx.runs = args.runs
    ctx.rng = random.Random(42)
    ctx.phases = [(k + 0.5) / max(ctx.runs, 1) for k in range(max(ctx.runs, 1))]
    ctx.exe = state["exe"]
    ctx.res = Results()
    ctx.res.skipped.update(state["skipped"])
    if args.tools:
        for t in TOOLS:
            if t not in args.tools.split(","):
                ctx.res.skipped.setdefault(t, "not selected (--tools)")
    ctx.work = tempfile.mkdtemp(prefix="confluence-bench-")
    ctx.logs = os.path.join(ctx.work, "logs")
    os.makedirs(ctx.logs)
    ctx.swarm = Swarm(args.swarm_dir, large=False)
    t_start = now()
    with open("/proc/loadavg") as f:
        load_start = f.read().split()[0]

    def on_signal(sig, _frm):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    floor = None
    rows = set(args.rows.split(",")) if args.rows else {"P1", "P3", "P5", "P6", "P7", "P8"}
    if args.no_large:
        rows.discard("P8")
    try:
        log(f"network namespace with only lo; work dir {ctx.work}; swarm dir {args.swarm_dir}; {ctx.runs} runs a row")
        t = now()
        ctx.swarm.up()
        ctx.swarm.describe()
        log(f"swarm up in {now() - t:.1f}s")
        # does our FUSE mount work here?
        try:
            o = Ours(ctx, mount=True)
            o.start()
            o.stop()
        except Exception as e:  # noqa: BLE001
            ctx.res.skipped["confluence-fuse"] = f"-mount unavailable: {e}"
            try:
                o.stop()
            except Exception:  # noqa: BLE001
                pass
        fl = floor_probe(ctx.swarm, 12, ctx.rng)
        floor = {k: statistics.median(x[k] for x in fl) for k in fl[0]}
        floor["mib_after_answer"] = statistics.median(x["first_mib"] - x["bitfield"] for x in fl)
        floor["bitfield_min"] = min(x["bitfield"] for x in fl)
        floor["bitfield_max"] = max(x["bitfield"] for x in fl)
        log("floor (seed1 peer wire, %d probes at random moments, median): handshake %.3fs, bitfield %.3fs "
            "[%.3f-%.3f], unchoke %.3fs, first MiB on one ideal connection %.3fs, all 64 MiB %.3fs "
            "(%.3fs after unchoke)"
            % (len(fl), floor["handshake"], floor["bitfield"], floor["bitfield_min"], floor["bitfield_max"],
               floor["unchoke"], floor["first_mib"], floor["all_64mib"], floor["transfer_64mib"]))
        if "P1" in rows:
            row_p1(ctx)
        if "P3" in rows:
            row_p3(ctx)
        if "P5" in rows:
            row_p5(ctx)
        if "P6" in rows:
            row_p6(ctx)
        if "P7" in rows:
            row_p7_idle(ctx)
        if "P8" in rows:
            row_p8(ctx)
    except KeyboardInterrupt as e:
        log(f"\ninterrupted ({e}); cleaning up")
        ctx.res.notes.append("interrupted")
    finally:
        cleanup()
        ctx.swarm.down()
        if not args.keep_logs:
            shutil.rmtree(ctx.work, ignore_errors=True)
        else:
            log(f"logs kept in {ctx.logs}")
    elapsed = now() - t_start
    ts = targets(ctx.res, floor)
    m = machine()
    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        rev = "?"
    m["git"] = rev
    with open("/proc/loadavg") as f:
        m["loadavg_1min"] = {"start": load_start, "end": f.read().split()[0]}
    tbl, ttbl = table(ctx.res), target_table(ts)
    skipped = "\n".join(f"- {k}: skipped: {v}" for k, v in sorted(ctx.res.skipped.items()))
    versions = {k[:-8]: v for k, v in ctx.exe.items() if k.endswith("@version")}
    head = (f"Machine: {m['nproc']} cores, {m['cpu']}, {m['mem_gib']} GiB, Linux {m['kernel']}; confluence at {rev}. "
            f"Medians of {ctx.runs} cold runs [min–max]; run took {elapsed / 60:.1f} min "
            f"(+{state['prep_s']:.0f}s build/installs); load average {load_start} at start, "
            f"{m['loadavg_1min']['end']} at the end (other work on the machine adds noise).")
    fl_line = (f"Seeder floor (peer-wire probes of seed1 at random moments): its handshake and bitfield come "
               f"{floor['bitfield']:.3f}s after connect (median; {floor['bitfield_min']:.3f}-{floor['bitfield_max']:.3f}s: "
               f"aria2c answers new connections on a ~1 s tick), first MiB on one ideal connection "
               f"{floor['first_mib']:.3f}s, all 64 MiB {floor['all_64mib']:.3f}s ({floor['transfer_64mib']:.3f}s "
               f"after its unchoke: the fastest the seeder delivers). Each cold run also probes at its t0: the 'minus seeder answer' rows "
               f"subtract that run's own floor." if floor else "Seeder floor: not measured.")
    text = "\n\n".join([head, fl_line, tbl, ttbl, skipped, "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())])
    log("\n" + "=" * 100 + "\n" + text + "\n")
    out = {"command": "bash bench/run.sh " + " ".join(args.passthrough), "machine": m, "runs": ctx.runs,
           "elapsed_s": elapsed, "prep_s": state["prep_s"], "floor": floor, "floor_runs": fl if floor else None,
           "rows": ctx.res.rows, "stats": {mm: {t: ctx.res.stat(mm, t) for t in v} for mm, v in ctx.res.rows.items()},
           "targets": ts, "skipped": ctx.res.skipped, "versions": versions, "notes": ctx.res.notes,
           "p5_offsets": p5_offsets()}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    with open(os.path.splitext(args.json)[0] + ".md", "w") as f:
        f.write(text + "\n")
    log(f"wrote {args.json}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="cold runs per row and tool (default 5; the spec wants >= 5)")
    ap.add_argument("--no-large", action="store_true",
                    help="skip P8 (it generates and seeds the 1 GiB `large` payload: ~2-3 min more)")
    ap.add_argument("--rows", default="", help="comma list of rows to run: P1,P3,P5,P6,P7,P8 (P1 includes P2, P4 and P7's streaming RSS)")
    ap.add_argument("--tools", default="", help="comma list: only these tools (e.g. confluence,rqbit)")
    ap.add_argument("--swarm-dir", default="/tmp/confluence-bench-swarm")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results.json"))
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release/confluence and relay")
    ap.add_argument("--no-install", action="store_true", help="install nothing; skip missing peers")
    ap.add_argument("--keep-logs", action="store_true", help="keep the tools' logs (path printed at the end)")
    ap.add_argument("--inside", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.passthrough = [a for a in sys.argv[1:] if a != "--inside" and a != args.inside]
    if args.inside:
        sys.exit(inside(args))
    outside(args)


if __name__ == "__main__":
    main()
