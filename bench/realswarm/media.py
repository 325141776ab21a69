"""The real-swarm benchmark's media payload (`--media`): a movie mpv can play, instead of random
bytes, at a known bitrate.

ffmpeg encodes it from fixed lavfi sources (testsrc2 640x360 at 24 fps, a 440 Hz sine), with
one thread and bit-exact flags, so the same ffmpeg makes the same bytes every time: H.264
(x264 `ultrafast`, a keyframe every 2 s) in constant bitrate (`nal-hrd=cbr`: x264 pads each
second to the target with filler NAL units, which decoders skip) and MP2 audio, in a Matroska
file whose cues are at the end, as real files have them. The picture needs far less than these
bitrates: the filler makes the file as large as a real movie at that rate, cheaply (a 48 s,
256 MiB file takes ~1 s to encode on 2 cores, a 192 s one ~3 s).

Files are made once and kept in the cache directory, named by a hash of the ffmpeg version and
command line.
"""

import hashlib
import json
import os
import subprocess

from bench import log
from profiles import SIZE

FPS, GOP, AUDIO_BPS = 24, 48, 128_000
MIN_SECS = 40  # 12 s of playback, the seek to 70 %, 8 s more, with room: 70 % of 40 s is 28 s


def secs_for(bitrate):
    """How long the movie at `bitrate` lasts: as long as the random payload's 256 MiB would (the
    same pieces, the same ideal), at least MIN_SECS."""
    return max(MIN_SECS, round(SIZE / bitrate))


def ffmpeg_argv(out, secs, video_bps):
    v = str(video_bps)
    return ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate={FPS}:duration={secs}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={secs}",
            "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-pix_fmt", "yuv420p", "-g", str(GOP),
            "-b:v", v, "-minrate", v, "-maxrate", v, "-bufsize", v, "-x264-params", "nal-hrd=cbr:force-cfr=1",
            "-c:a", "mp2", "-b:a", str(AUDIO_BPS),
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            "-f", "matroska", out]


def ffmpeg_version():
    return subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]


def probe_duration(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise RuntimeError(f"ffprobe {path}: {r.stderr.strip()[-300:]}")
    return float(r.stdout.strip())


def movie(cache_dir, bitrate, secs):
    """The movie at `bitrate` bytes/s (audio and container included, within ~1%) lasting `secs`:
    {path, size, duration_s, bitrate (measured: size / duration), ffmpeg (its command line)}."""
    video_bps = int(bitrate * 8 - AUDIO_BPS)
    argv = ffmpeg_argv("OUT", secs, video_bps)
    key = hashlib.sha256(json.dumps([ffmpeg_version(), argv]).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"movie-{key}.mkv")
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        log(f"encoding {secs} s at {bitrate / 2**20:.2f} MiB/s into {path}")
        tmp = path + ".tmp"
        r = subprocess.run(ffmpeg_argv(tmp, secs, video_bps), capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"ffmpeg: {r.stderr.strip()[-300:]}")
        os.replace(tmp, path)
    size, duration = os.path.getsize(path), probe_duration(path)
    return {"path": path, "size": size, "duration_s": duration, "bitrate": size / duration,
            "ffmpeg": " ".join(argv)}
