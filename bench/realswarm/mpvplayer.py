"""mpv as the player of the real-swarm benchmark: the same scenario as player.py, played and
timed by mpv itself (`--vo=null --ao=null`, driven over its JSON IPC socket), on the --media
movie.

mpv starts idle before the torrent is added (a player already open), so its own start-up is not
counted. Then, as player.py does: `loadfile` of the client's stream URL; **startup** is from the
add until mpv's `playback-restart` event (first frame shown, audio started) with
`paused-for-cache` false. Every `paused-for-cache` that goes true while playing is a
**rebuffer**, until it goes false (mpv resumes after `cache-pause-wait`, 1 s buffered); each is
kept in `stalls` as [playback-time, seconds]. After PLAY_BEFORE_SEEK s of playback (mpv's
`playback-time`) `seek 70 absolute-percent`; **seek-to-resume** is from sending it until
`playback-restart` with `paused-for-cache` false (mpv lands on the keyframe before 70 %:
`resumed_at`). Then PLAY_AFTER_SEEK s more, and `quit`.

mpv keeps its defaults otherwise: its user config and scripts are off, and so it plays as soon
as one frame is decoded (`cache-pause-initial=no`, often followed by a stall), reads ahead up to
150 MiB (`demuxer-max-bytes`), and reads a Matroska file's cues (at its end) only at the first
seek. A run fails, never giving a number, if mpv ends the file early, exits non-zero, or logs an
error (`[e]`/`[f]` lines of its log file: demuxer, decoder, network). Byte correctness is
player.py's job, not mpv's.
"""

import json
import os
import re
import socket
import time

from bench import Proc, now
from player import PLAY_AFTER_SEEK, PLAY_BEFORE_SEEK, SEEK_AT, Failed

ARGS = ["--no-config", "--idle=yes", "--no-terminal", "--vo=null", "--ao=null", "--ytdl=no", "--osc=no",
        "--load-stats-overlay=no", "--load-osd-console=no", "--load-auto-profiles=no"]
ERROR_LINE = re.compile(r"^\[\s*[\d.]+\]\[[ef]\]")  # mpv log lines at level error or fatal


class Ipc:
    """mpv's JSON IPC over its unix socket: commands out, events and replies in, one per line."""

    def __init__(self, path, deadline, proc):
        self.sock, self.buf, self.next_id = socket.socket(socket.AF_UNIX), b"", 1
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                if now() > deadline or not proc.alive():
                    raise Failed(f"mpv's IPC socket did not open: {proc.tail()}")
                time.sleep(0.02)
        self.sock.settimeout(0.1)

    def send(self, *cmd):
        """Sends a command; returns its request_id (its reply carries it)."""
        self.next_id += 1
        self.sock.sendall(json.dumps({"command": list(cmd), "request_id": self.next_id}).encode() + b"\n")
        return self.next_id

    def messages(self):
        """The messages that arrived within 0.1 s (possibly none)."""
        try:
            b = self.sock.recv(65536)
        except socket.timeout:
            return []
        if not b:
            raise Failed("mpv closed its IPC socket")
        self.buf += b
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(ln) for ln in lines if ln.strip()]

    def close(self):
        self.sock.close()


class MpvPlayer:
    """One mpv process playing one URL; `run` returns the same result keys as player.Player."""

    def __init__(self, logs):
        """Starts mpv idle (a player already open before play is pressed)."""
        self.sock_path = os.path.join(logs, f"mpv-{int(now() * 1000)}.sock")
        self.log_path = self.sock_path[:-len(".sock")] + ".log"
        self.proc = Proc("mpv", ["mpv", *ARGS, f"--input-ipc-server={self.sock_path}",
                                 f"--log-file={self.log_path}"], logs)
        try:
            self.ipc = Ipc(self.sock_path, now() + 10, self.proc)
        except Exception:
            self.proc.stop(grace=5)
            raise
        self.ipc.send("observe_property", 1, "paused-for-cache")
        self.ipc.send("observe_property", 2, "playback-time")
        self.cache_paused, self.restarted, self.pos = False, False, None
        self.playing = False  # counting rebuffers (between a resume and the next seek)
        self.stall_t, self.deadline, self.replies = None, None, {}
        self.result = {"rebuffers": 0, "rebuffer_s": 0.0, "stalls": []}  # stalls: [playback-time, s]

    def handle(self, m):
        if m.get("request_id") and m.get("error") != "success":
            raise Failed(f"mpv refused a command: {m}")
        if m.get("request_id"):
            self.replies[m["request_id"]] = m.get("data")
        ev = m.get("event")
        if ev == "playback-restart":
            self.restarted = True
        elif ev == "end-file":
            raise Failed(f"mpv ended the file at {self.pos} s: {m.get('reason')} {m.get('file_error', '')}")
        elif ev == "property-change" and m["name"] == "playback-time":
            self.pos = m.get("data")
        elif ev == "property-change" and m["name"] == "paused-for-cache":
            self.cache_paused = bool(m.get("data"))
            if self.playing and self.cache_paused and self.stall_t is None:
                self.stall_t = now()
                self.result["rebuffers"] += 1
                self.result["stalls"].append([self.pos, None])
            elif not self.cache_paused:
                self.end_stall()

    def end_stall(self):
        if self.stall_t is not None:
            self.result["rebuffer_s"] += now() - self.stall_t
            self.result["stalls"][-1][1] = now() - self.stall_t
            self.stall_t = None

    def wait_for(self, cond, what):
        while not cond():
            if now() > self.deadline:
                raise Failed(f"deadline passed waiting for {what} (playback-time {self.pos})")
            if not self.proc.alive():
                raise Failed(f"mpv exited (rc {self.proc.p.returncode}) waiting for {what}")
            for m in self.ipc.messages():
                self.handle(m)

    def query(self, prop):
        """A property's value now (the reply comes after every event sent before it)."""
        rid = self.ipc.send("get_property", prop)
        self.wait_for(lambda: rid in self.replies, prop)
        return self.replies.pop(rid)

    def resumed(self):
        return self.restarted and not self.cache_paused

    def play_until(self, t, what):
        self.playing = True
        self.wait_for(lambda: self.pos is not None and self.pos >= t, what)
        self.playing = False
        self.end_stall()

    def run(self, add, t0, deadline):
        """t0: when play was pressed; `add()` adds the torrent and returns the URL to play."""
        self.deadline = deadline
        try:
            self.ipc.send("loadfile", add())
            self.wait_for(self.resumed, "the first frame")
            self.result["startup_s"] = now() - t0
            self.play_until(PLAY_BEFORE_SEEK, f"{PLAY_BEFORE_SEEK:g} s of playback")
            self.restarted = False
            t_seek = now()
            self.ipc.send("seek", SEEK_AT * 100, "absolute-percent")
            self.wait_for(self.resumed, "playback after the seek")
            self.result["seek_s"] = now() - t_seek
            self.result["resumed_at"] = self.query("playback-time")  # the keyframe before 70 %
            self.play_until(self.result["resumed_at"] + PLAY_AFTER_SEEK, f"{PLAY_AFTER_SEEK:g} s after the seek")
            self.quit()
        finally:
            self.ipc.close()
            self.proc.stop(grace=5)
        return self.result

    def quit(self):
        self.ipc.send("quit", 0)
        rc = self.proc.wait(10)
        if rc != 0:
            raise Failed(f"mpv exited with {rc} after quit")
        errors = self.errors()
        if errors:
            raise Failed("mpv logged errors: " + " | ".join(errors[:3]))

    def errors(self):
        with open(self.log_path, errors="replace") as f:
            return [ln.strip() for ln in f if ERROR_LINE.match(ln)]
