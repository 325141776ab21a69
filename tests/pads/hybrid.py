#!/usr/bin/python3
"""BEP 52 hybrid torrents (with BEP 47 pad files) for tests/it/pads.rs, made and seeded by
libtorrent 2.x (Debian python3-libtorrent), as qBittorrent makes them.

  hybrid.py make DIR         writes DIR/payload/hybrid/... (fixed pseudo-random bytes),
                             DIR/hybrid.torrent (v1+v2, pad files) and DIR/v2only.torrent
  hybrid.py seed DIR PORT    seeds DIR/hybrid.torrent on 127.0.0.31 (never .1-.9 or .21, which
                             the harness and the cluster test use) and keeps connecting to the
                             daemon's BitTorrent port 127.0.0.1:PORT; exits by itself after
                             LIFETIME seconds (the test stops it by PID first)
"""
import os
import random
import sys
import time

import libtorrent as lt

LIFETIME = 240
PIECE = 16384
# Sizes that are not piece multiples, so v2 alignment needs pad files between them.
FILES = [("a.bin", 70001), ("sub/b.bin", 40000), ("sub/deep/c.mkv", 33333), ("z.txt", 5)]


def make(d):
    top = os.path.join(d, "payload", "hybrid")
    rng = random.Random(52)
    for rel, size in FILES:
        p = os.path.join(top, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(bytes(rng.getrandbits(8) for _ in range(size)))
    for name, flags in (("hybrid", 0), ("v2only", lt.create_torrent.v2_only)):
        fs = lt.file_storage()
        lt.add_files(fs, top)
        ct = lt.create_torrent(fs, PIECE, flags=flags)
        lt.set_piece_hashes(ct, os.path.join(d, "payload"))
        with open(os.path.join(d, name + ".torrent"), "wb") as f:
            f.write(lt.bencode(ct.generate()))


def seed(d, port):
    ses = lt.session({
        "listen_interfaces": "127.0.0.31:0",
        "outgoing_interfaces": "127.0.0.31",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification,
    })
    ti = lt.torrent_info(os.path.join(d, "hybrid.torrent"))
    h = ses.add_torrent({"ti": ti, "save_path": os.path.join(d, "payload")})
    h.force_recheck()
    print("seeding", ti.info_hashes().v1, flush=True)
    deadline = time.monotonic() + LIFETIME
    while time.monotonic() < deadline:
        st = h.status()
        if st.is_seeding:
            # The daemon only accepts peers of torrents it holds: keep knocking.
            h.connect_peer(("127.0.0.1", port))
        for a in ses.pop_alerts():
            print("alert:", a.message(), flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "seed":
        seed(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
