#!/usr/bin/python3
"""examples/client.py: a Python client of confluence's HTTP API.

    /usr/bin/python3 examples/client.py MAGNET_OR_INFOHASH [PATH] [--out FILE]

Lists the torrent's files from /metainfo's JSON, streams one file (PATH, else the largest)
with a progress bar, and meanwhile listens on the /events websocket, printing each piece that
changes ("PieceChanged") as the download moves. Needs requests and websockets (Debian:
python3-requests python3-websockets). CONFLUENCE is the daemon (default
http://localhost:8080); CONFLUENCE_AUTH_TOKEN, if set, is sent as a bearer token.
"""

import argparse
import asyncio
import base64
import hashlib
import os
import sys
import threading
import time

import requests
import websockets

BASE = os.environ.get("CONFLUENCE", "http://localhost:8080")
TOKEN = os.environ.get("CONFLUENCE_AUTH_TOKEN")
HEADERS = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}


def bdecode(b, i=0):
    """Decodes one bencoded value at b[i:]; returns (value, next index)."""
    c = b[i : i + 1]
    if c == b"i":
        end = b.index(b"e", i)
        return int(b[i + 1 : end]), end + 1
    if c in (b"l", b"d"):
        items, i = [], i + 1
        while b[i : i + 1] != b"e":
            v, i = bdecode(b, i)
            items.append(v)
        if c == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2])), i + 1
    colon = b.index(b":", i)
    n = int(b[i:colon])
    return b[colon + 1 : colon + 1 + n], colon + 1 + n


def torrent_query(arg):
    """`magnet=` or `ih=`, as every route takes."""
    return {"magnet": arg} if arg.startswith("magnet:") else {"ih": arg}


def list_files(q):
    """The files of the torrent, [(display path, length)], from GET /metainfo as JSON."""
    r = requests.get(
        f"{BASE}/metainfo",
        params=q,
        headers={**HEADERS, "Accept": "application/json"},
        timeout=120,  # the first request waits for the info from peers
    )
    r.raise_for_status()
    info, _ = bdecode(base64.b64decode(r.json()["info"]))
    if b"files" not in info:  # single-file torrent: the file is the torrent's name
        return [(info[b"name"].decode(), info[b"length"])]
    return [
        ("/".join(p.decode() for p in f[b"path"]), f[b"length"]) for f in info[b"files"]
    ]


def watch_events(q, stop, seen):
    """Runs in a thread: prints every PieceChanged until `stop` is set."""

    async def run():
        url = BASE.replace("http", "ws", 1) + "/events?" + requests.compat.urlencode(q)
        async with websockets.connect(url, extra_headers=HEADERS, open_timeout=30) as ws:
            while not stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.2)
                except asyncio.TimeoutError:
                    continue
                piece = requests.compat.json.loads(msg).get("PieceChanged")
                seen.append(piece)
                # The reaction: a line per change (a UI would repaint that piece).
                sys.stderr.write(f"\n  piece {piece} changed\n")

    try:
        asyncio.run(run())
    except Exception as e:  # the stream still works without events
        sys.stderr.write(f"\n/events: {e}\n")


def stream(q, path, size, out):
    """GETs /data for `path`, writing to `out` with a progress bar; returns the sha256."""
    h = hashlib.sha256()
    done, start = 0, time.monotonic()
    with requests.get(
        f"{BASE}/data", params={**q, "path": path}, headers=HEADERS, stream=True, timeout=120
    ) as r:
        r.raise_for_status()
        for chunk in r.iter_content(256 * 1024):
            out.write(chunk)
            h.update(chunk)
            done += len(chunk)
            pct = done * 100 // max(size, 1)
            rate = done / max(time.monotonic() - start, 1e-3) / 2**20
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r[{bar:<25}] {pct:3d}% {done}/{size} B {rate:.1f} MiB/s")
    sys.stderr.write("\n")
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("torrent", help="magnet link or hex infohash")
    ap.add_argument("path", nargs="?", help="file to stream (default: the largest)")
    ap.add_argument("--out", default=os.devnull, help="where the bytes go")
    a = ap.parse_args()
    q = torrent_query(a.torrent)

    files = list_files(q)
    for p, n in files:
        print(f"{n:>12}  {p}")
    path, size = next(((p, n) for p, n in files if p == a.path), None) or max(
        files, key=lambda f: f[1]
    )
    if a.path and path != a.path:
        sys.exit(f"no file {a.path!r} in the torrent")

    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=watch_events, args=(q, stop, seen), daemon=True)
    watcher.start()
    time.sleep(0.5)  # let the websocket open before the pieces start changing
    with open(a.out, "wb") as out:
        digest = stream(q, path, size, out)
    time.sleep(0.5)  # the last changes
    stop.set()
    watcher.join(5)
    print(f"sha256 {digest}  {path}")
    print(f"piece changes seen: {len(seen)}")


if __name__ == "__main__":
    main()
