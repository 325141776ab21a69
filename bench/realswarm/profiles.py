"""The named swarm profiles of the real-swarm benchmark and the ideal a client is measured against.

A profile is a list of seeders, each behind its own proxy (proxy.py) with a one-way delay each
direction and an upload cap, optionally a shared cap on the client's downlink, and faults:
`silent` (goes quiet after N bytes, socket kept open), `reset` (RST after N bytes), `corrupt`
(aria2c seeding a copy with one wrong byte in every piece). `capacity` counts only the steady
seeders: a client cannot count on the faulty ones, and the ideal does not either.
"""

import statistics

KIB, MIB = 1024, 1024 * 1024
PIECE = 1 * MIB            # a movie-sized torrent's piece (1-8 GB files use 1-4 MiB)
SIZE = 256 * MIB           # the payload: one file, random bytes named like a movie (--media: about as large)
HANDSHAKE_RTTS = 4         # TCP connect, BT handshake, interested/unchoke, request/first block


def spread(lo, hi, n):
    """n one-way delays evenly from lo to hi ms (a swarm's peers are at many distances)."""
    return [lo + (hi - lo) * i / max(n - 1, 1) for i in range(n)]


def peers(n_lt, n_aria2, delays, rate):
    kinds = ["lt"] * n_lt + ["aria2"] * n_aria2
    return [{"kind": k, "delay_ms": d, "rate": rate} for k, d in zip(kinds, delays)]


def flaky():
    ps = peers(8, 1, spread(20, 100, 9), 384 * KIB)
    ps.append({"kind": "lt", "delay_ms": 40, "rate": 384 * KIB, "silent_after": 2 * MIB + 40 * KIB})
    ps.append({"kind": "lt", "delay_ms": 60, "rate": 384 * KIB, "reset_after": 3 * MIB + 7 * KIB})
    ps.append({"kind": "corrupt", "delay_ms": 30, "rate": 384 * KIB})
    return ps


PROFILES = {
    "lan": {
        "about": "8 seeders (6 libtorrent, 2 aria2c) 1 ms away (2 ms RTT), 1 MiB/s each: 8 MiB/s",
        "peers": peers(6, 2, [1] * 8, 1 * MIB),
    },
    "dsl": {
        "about": "10 seeders (8 libtorrent, 2 aria2c) 20 ms away (40 ms RTT), 512 KiB/s each, "
                 "behind the client's 2 MiB/s (16 Mbit/s) downlink: 2 MiB/s",
        "peers": peers(8, 2, [20] * 10, 512 * KIB),
        "client_cap": 2 * MIB,
    },
    "wan-many-slow": {
        "about": "16 seeders (14 libtorrent, 2 aria2c) 10-125 ms away (RTT 20-250 ms, evenly spread), "
                 "256 KiB/s each: 4 MiB/s",
        "peers": peers(14, 2, spread(10, 125, 16), 256 * KIB),
    },
    "wan-flaky": {
        "about": "12 seeders 20-100 ms away (RTT 40-200 ms), 384 KiB/s each: 8 libtorrent and 1 aria2c "
                 "steady (3.4 MiB/s), 1 libtorrent that goes silent 2 MiB + 40 KiB into each connection "
                 "(socket kept open), 1 libtorrent that resets 3 MiB + 7 KiB into each connection, "
                 "1 aria2c seeding corrupt data (one wrong byte in every piece)",
        "peers": flaky(),
    },
}


def steady(p):
    return [s for s in p["peers"] if s["kind"] != "corrupt" and "silent_after" not in s and "reset_after" not in s]


def capacity(p):
    c = sum(s["rate"] for s in steady(p))
    return min(c, p["client_cap"]) if p.get("client_cap") else c


def rtt(p):
    """The median round trip (s) to the steady seeders."""
    return statistics.median(2 * s["delay_ms"] for s in steady(p)) / 1000.0


def pieces(ranges, size=SIZE):
    """Bytes of the whole pieces covering the byte ranges (a client verifies whole pieces)."""
    idx = set()
    for a, b in ranges:
        idx.update(range(a // PIECE, (min(b, size) - 1) // PIECE + 1))
    return sum(min(PIECE, size - i * PIECE) for i in idx)


def ideal(p, bitrate, header, index, startup_secs, seek_at, size=SIZE):
    """(startup, seek) in seconds for a client that uses the whole steady capacity from the first
    byte: the pieces it must have at the swarm's rate plus the round trips to get them."""
    cap, r = capacity(p), rtt(p)
    start = pieces([(0, header), (size - index, size), (header, header + int(startup_secs * bitrate))], size)
    off = int(size * seek_at)
    seek = pieces([(off, off + int(startup_secs * bitrate))], size)
    return start / cap + HANDSHAKE_RTTS * r, seek / cap + r
