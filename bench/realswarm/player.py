"""A player-like HTTP consumer: what a video player asks of a streaming torrent client.

It reads the way mpv or VLC open a moov-at-end mp4 or an mkv whose cues are at the end: the
header (first 64 KiB), then the index (last 1 MiB), then sequentially from after the header,
each a new Range request. Playback starts when 2 s of media past the header are there (the
startup time counts from the moment the torrent is added, as a user presses play), then the
playhead advances at the bitrate in real time. The reader keeps at most 20 s of media ahead of
the playhead, as a player's cache does. If the playhead catches up with the data it stalls (a
rebuffer) and resumes when 1 s is buffered again (mpv's cache-pause-wait). After PLAY_BEFORE_SEEK
seconds of playback it seeks to SEEK_AT of the file (a new Range request) and measures the time
until 2 s are playable again, then plays PLAY_AFTER_SEEK seconds more.

Every byte is compared with the payload: a wrong byte fails the run, it never gives a number.
"""

import http.client
import mmap
import socket
import threading
import time
import urllib.parse

KIB, MIB = 1024, 1024 * 1024
HEADER = 64 * KIB
INDEX = 1 * MIB
STARTUP_SECS = 2.0     # "first 2 s playable"
RESUME_SECS = 1.0      # a rebuffer ends when this much is buffered again
READAHEAD_SECS = 20.0  # the player's cache
PLAY_BEFORE_SEEK = 12.0
SEEK_AT = 0.70
PLAY_AFTER_SEEK = 8.0
TICK = 0.01


class Failed(Exception):
    pass


def get(url, start, end=None, timeout=60):
    """Open a Range request; returns (connection, response) positioned at `start`."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    rng = f"bytes={start}-" + ("" if end is None else str(end - 1))
    c.request("GET", u.path + ("?" + u.query if u.query else ""), headers={"Range": rng})
    r = c.getresponse()
    if r.status != 206:
        raise Failed(f"GET {rng}: HTTP {r.status} {r.read(200)!r}")
    return c, r


class Reader(threading.Thread):
    """Reads one Range response from `start` into nothing, checking each byte, tracking `pos`
    (the end of the contiguous data received), staying at most `ahead()` bytes past the playhead."""

    def __init__(self, url, start, size, payload, ahead):
        super().__init__(daemon=True)
        self.url, self.pos, self.size, self.payload, self.ahead = url, start, size, payload, ahead
        self.error, self.stopped, self.conn = None, False, None

    def run(self):
        try:
            self.conn, r = get(self.url, self.pos)
            while self.pos < self.size and not self.stopped:
                if self.ahead(self.pos):
                    time.sleep(TICK)
                    continue
                b = r.read1(256 * KIB)
                if not b:
                    raise Failed(f"EOF at {self.pos} of {self.size}")
                if self.payload[self.pos:self.pos + len(b)] != b:
                    raise Failed(f"wrong bytes in [{self.pos}, {self.pos + len(b)})")
                self.pos += len(b)
        except Exception as e:  # noqa: BLE001 - reported by the player
            if not self.stopped:
                self.error = e
        finally:
            self.close()

    def close(self):
        if self.conn and self.conn.sock:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        self.close()


def read_exact(url, start, end, payload):
    c, r = get(url, start, end)
    try:
        b = r.read(end - start)
    finally:
        c.close()
    if payload[start:end] != b:
        raise Failed(f"wrong or short bytes in [{start}, {end}): got {len(b)}")


class Player:
    def __init__(self, payload_path, size, bitrate, deadline):
        with open(payload_path, "rb") as f:
            self.payload = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.size, self.rate, self.deadline = size, bitrate, deadline
        self.playhead = 0.0  # byte offset being shown
        self.result = {"rebuffers": 0, "rebuffer_s": 0.0}

    def ahead(self, pos):
        return pos - self.playhead > READAHEAD_SECS * self.rate

    def check(self, reader):
        if reader.error:
            raise Failed(str(reader.error))
        if time.monotonic() > self.deadline:
            raise Failed(f"deadline passed (at byte {reader.pos}, playhead {int(self.playhead)})")

    def buffer_until(self, reader, secs):
        """Wait until `secs` of media past the playhead are there (or the file ends)."""
        need = min(self.playhead + secs * self.rate, self.size)
        while reader.pos < need:
            self.check(reader)
            time.sleep(TICK)

    def play(self, reader, secs):
        """Advance the playhead in real time for `secs` of playback, stalling when data is late."""
        played, last = 0.0, time.monotonic()
        while played < secs and self.playhead < self.size:
            self.check(reader)
            time.sleep(TICK)
            t = time.monotonic()
            step = min(t - last, secs - played)
            last = t
            want = self.playhead + step * self.rate
            if reader.pos >= min(want, self.size):
                self.playhead, played = want, played + step
                continue
            self.playhead = reader.pos  # shown up to here, then the picture freezes
            t_stall = time.monotonic()
            self.result["rebuffers"] += 1
            self.buffer_until(reader, RESUME_SECS)
            last = time.monotonic()
            self.result["rebuffer_s"] += last - t_stall

    def run(self, url, t0):
        """t0: when play was pressed (before the torrent was added). Returns the result dict;
        raises Failed naming the phase (header, index, startup, play, seek) that failed."""
        self.phase = "header"
        try:
            return self.phases(url, t0)
        except Exception as e:  # noqa: BLE001
            raise Failed(f"{self.phase} at {time.monotonic() - t0:.1f} s: {e}") from e
        finally:
            self.payload.close()

    def phases(self, url, t0):
        read_exact(url, 0, HEADER, self.payload)
        self.result["header_s"] = time.monotonic() - t0
        self.phase = "index"
        read_exact(url, self.size - INDEX, self.size, self.payload)
        self.result["index_s"] = time.monotonic() - t0
        self.playhead = HEADER
        reader = Reader(url, HEADER, self.size, self.payload, self.ahead)
        reader.start()
        try:
            self.phase = "startup"
            self.buffer_until(reader, STARTUP_SECS)
            self.result["startup_s"] = time.monotonic() - t0
            self.phase = "play"
            self.play(reader, PLAY_BEFORE_SEEK)
            reader.stop()
            t_seek = time.monotonic()
            self.playhead = int(self.size * SEEK_AT)
            reader = Reader(url, int(self.playhead), self.size, self.payload, self.ahead)
            reader.start()
            self.phase = "seek"
            self.buffer_until(reader, STARTUP_SECS)
            self.result["seek_s"] = time.monotonic() - t_seek
            self.phase = "play after the seek"
            self.play(reader, PLAY_AFTER_SEEK)
        finally:
            reader.stop()
            reader.join(5)
        return self.result


def full_read(url, payload_path, size, t0, deadline):
    """Downloads the whole file once, as fast as the client delivers it (not playback): when the
    first bytes came and the average rate after them. Every byte is checked."""
    with open(payload_path, "rb") as f:
        payload = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    reader = Reader(url, 0, size, payload, lambda _pos: False)
    try:
        reader.start()
        t_first = None
        while reader.is_alive():
            if t_first is None and reader.pos > 0:
                t_first = time.monotonic()
            if time.monotonic() > deadline:
                raise Failed(f"deadline passed (at byte {reader.pos} of {size})")
            time.sleep(TICK)
        if reader.error or reader.pos < size:
            raise Failed(str(reader.error or f"stopped at byte {reader.pos} of {size}"))
        t_end = time.monotonic()
    finally:
        reader.stop()
        reader.join(5)
        payload.close()
    t_first = t_first or t_end
    return {"first_bytes_s": t_first - t0, "full_s": t_end - t0,
            "full_MiBps": size / (1024 * 1024) / max(t_end - t_first, 1e-6)}
