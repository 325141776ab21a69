#!/usr/bin/env python3
"""Delaying TCP proxies, one per seeder, all in this one asyncio process (bench only).

This kernel has no `netem` qdisc, so latency, rate caps and misbehaving peers are made here, in
user space, between the clients and the seeders. Each proxy listens on its own loopback address
and forwards to one seeder; the tracker is told about the proxies (announced from each proxy's
own source address), never about the seeders, so every byte a client gets passes a proxy.

A proxy direction models a FIFO link: a chunk read at time `a` leaves the bottleneck at
`d = max(a, previous departure) + len/rate` and arrives `delay` later. Departures are reserved
when data is read, so the link stays pipelined however long the delay; reading pauses while
more than `rate*delay + 128 KiB` is queued (the bytes on the wire plus a router buffer), which
gives the seeder TCP back-pressure as a real bottleneck would. An optional shared `client_cap`
(bytes/s) is a second bottleneck every proxy's downstream shares: the client's own access link.

Faults (per connection, counted in bytes sent towards the client):
- `silent_after`: after N bytes nothing more passes in either direction, but both sockets stay
  open (a peer that vanished behind a NAT: no FIN, no RST; only a client timeout notices).
- `reset_after`: after N bytes both sockets are closed with SO_LINGER 0, so the client sees RST.

Usage: proxy.py CONFIG.json (see realswarm.py `proxy_config`). Prints `ready` once every proxy
listens and has announced; runs until SIGTERM.
"""

import asyncio
import json
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

SLICE = 16 * 1024          # pacing granularity
ROUTER_BUFFER = 128 * 1024  # queued beyond rate*delay before the reader stops


class Bottleneck:
    """A departure clock: bytes leave one after another at `rate` bytes/s."""

    def __init__(self, rate):
        self.rate = rate
        self.clock = 0.0

    def depart(self, at, n):
        if not self.rate:
            return at
        self.clock = max(at, self.clock) + n / self.rate
        return self.clock


class Direction:
    """One direction of one connection: reader stamps and queues, writer delivers on time."""

    def __init__(self, src, dst, delay, links, limit):
        self.src, self.dst, self.delay, self.links, self.limit = src, dst, delay, links, limit
        self.queue = asyncio.Queue()
        self.queued = 0
        self.room = asyncio.Event()
        self.room.set()
        self.sent = 0

    async def read_loop(self, conn):
        while not conn.done:
            await self.room.wait()
            data = await self.src.read(SLICE)
            if not data:
                self.queue.put_nowait(None)
                return
            if conn.muted:
                continue  # a silent peer: read and drop, never answer
            t = time.monotonic()
            for link in self.links:
                t = link.depart(t, len(data))
            self.queued += len(data)
            if self.queued > self.limit:
                self.room.clear()
            self.queue.put_nowait((t + self.delay, data))

    async def write_loop(self, conn, fault):
        while not conn.done:
            item = await self.queue.get()
            if item is None:
                return
            at, data = item
            self.queued -= len(data)
            if self.queued <= self.limit:
                self.room.set()
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if conn.muted or conn.done:
                continue
            if fault and fault["after"] is not None and self.sent + len(data) >= fault["after"]:
                cut = max(fault["after"] - self.sent, 0)
                self.dst.write(data[:cut])
                self.sent += cut
                await self.dst.drain()
                conn.trip(fault["kind"])
                continue
            self.dst.write(data)
            self.sent += len(data)
            await self.dst.drain()


class Conn:
    def __init__(self, writers):
        self.writers = writers
        self.done = False
        self.muted = False

    def trip(self, kind):
        if kind == "silent":
            self.muted = True
            return
        for w in self.writers:  # reset: RST instead of FIN
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        self.done = True


def limit_for(rate, delay):
    return int(rate * delay) + ROUTER_BUFFER if rate else 4 * 1024 * 1024


async def serve_one(p, shared_down):
    delay = p["delay_ms"] / 1000.0
    rate = p.get("rate") or 0
    fault = None
    for kind in ("silent", "reset"):
        if p.get(kind + "_after") is not None:
            fault = {"kind": kind, "after": p[kind + "_after"]}

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.wait_for(
                asyncio.open_connection(p["upstream_ip"], p["upstream_port"], local_addr=(p["ip"], 0)), 10)
        except (OSError, asyncio.TimeoutError):
            cw.close()
            return
        conn = Conn([cw, sw])
        down_links = [Bottleneck(rate)] + ([shared_down] if shared_down else [])
        down = Direction(sr, cw, delay, down_links, limit_for(rate, delay))
        up = Direction(cr, sw, delay, [Bottleneck(0)], limit_for(0, delay))
        tasks = [asyncio.ensure_future(c) for c in
                 (down.read_loop(conn), down.write_loop(conn, fault), up.read_loop(conn), up.write_loop(conn, None))]
        try:
            # BitTorrent never half-closes: when either side ends (or errs), end the connection.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            conn.done = True
            for t in tasks:
                t.cancel()
            for w in (cw, sw):
                w.close()

    return await asyncio.start_server(handle, p["ip"], p["port"], reuse_address=True)


def announce(tracker, info_hash, ip, port, event="started"):
    """HTTP announce from the proxy's own address: opentracker records the source address."""
    u = urllib.parse.urlsplit(tracker)
    q = urllib.parse.urlencode({"info_hash": info_hash, "peer_id": b"-PX0001-" + ip.encode().ljust(12, b"-")[:12],
                                "port": port, "uploaded": 0, "downloaded": 0, "left": 0, "event": event,
                                "compact": 1, "numwant": 0})
    with socket.create_connection((u.hostname, u.port), timeout=5, source_address=(ip, 0)) as s:
        s.sendall(f"GET {u.path}?{q} HTTP/1.0\r\nHost: {u.hostname}\r\n\r\n".encode())
        s.settimeout(5)
        body = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            body += b
    if b" 200 " not in body.split(b"\r\n", 1)[0] or b"failure" in body:
        raise RuntimeError(f"announce {ip}:{port}: {body[:200]!r}")


async def main(cfg):
    shared = Bottleneck(cfg["client_cap"]) if cfg.get("client_cap") else None
    servers = [await serve_one(p, shared) for p in cfg["proxies"]]
    ih = bytes.fromhex(cfg["info_hash"])
    for p in cfg["proxies"]:
        announce(cfg["tracker"], ih, p["ip"], p["port"])

    def reannounce():  # opentracker forgets peers after ~30 min; a long run must stay listed
        while True:
            time.sleep(600)
            for p in cfg["proxies"]:
                try:
                    announce(cfg["tracker"], ih, p["ip"], p["port"], event="")
                except Exception as e:  # noqa: BLE001
                    print(f"re-announce {p['ip']}: {e}", flush=True)

    threading.Thread(target=reannounce, daemon=True).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
