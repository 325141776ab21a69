#!/usr/bin/python3
"""libtorrent seeders for the real-swarm benchmark: one libtorrent session per address, all in
this one process (Debian's python3-libtorrent, so run it with /usr/bin/python3).

Most of a real swarm is libtorrent (qBittorrent, Deluge, Transmission's cousins), so most of
ours is too. Each session listens on its own loopback address and seeds the payload from a
torrent without trackers: it must not announce itself, only its proxy is announced (proxy.py),
so every client connection passes the proxy's delay, rate cap and faults. The payload was
written by the benchmark and is known good, so the torrent is added in seed mode (no re-hash).

Usage: seeders.py TORRENT SAVE_DIR IP:PORT... Prints `ready` once every session seeds; runs
until SIGTERM.
"""

import signal
import sys
import time

import libtorrent as lt


def session(ip, port):
    return lt.session({
        "listen_interfaces": f"{ip}:{port}",
        "outgoing_interfaces": ip,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,  # every connection comes from a proxy address
        "alert_mask": lt.alert.category_t.error_notification,
        "unchoke_slots_limit": 16,
    })


def main():
    torrent, save, addrs = sys.argv[1], sys.argv[2], sys.argv[3:]
    info = lt.torrent_info(torrent)
    sessions, handles = [], []
    for a in addrs:
        ip, port = a.rsplit(":", 1)
        s = session(ip, int(port))
        p = lt.add_torrent_params()
        p.ti = info
        p.save_path = save
        p.flags |= lt.torrent_flags.seed_mode
        p.flags &= ~lt.torrent_flags.auto_managed
        p.flags &= ~lt.torrent_flags.paused
        handles.append(s.add_torrent(p))
        sessions.append(s)
    deadline = time.monotonic() + 60
    while not all(h.status().is_seeding for h in handles):
        if time.monotonic() > deadline:
            sys.exit("seeders: not seeding after 60 s")
        time.sleep(0.1)
    print("ready", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        for s in sessions:
            for a in s.pop_alerts():
                print(f"{a.what()}: {a.message()}", flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
