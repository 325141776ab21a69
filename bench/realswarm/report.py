"""The real-swarm benchmark's table: medians with min-max beside the ideal, in Markdown."""

import statistics


def stat(runs, key):
    v = [r[key] for r in runs if key in r]
    if not v:
        return None
    return statistics.median(v), min(v), max(v)


def cell(s, fmt="{:.2f}"):
    if s is None:
        return "-"
    med, lo, hi = s
    return f"{fmt.format(med)} ({fmt.format(lo)}–{fmt.format(hi)})"


def ratio(s, base):
    return "-" if s is None or not base else f"{s[0] / base:.1f}×"


def table(rows):
    out = ["| profile @ bitrate | client | runs ok / failed | startup s | × ideal | rebuffers | rebuffer s "
           "| seek-to-resume s | × ideal |",
           "|---|---|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        ideal = row["ideal"]
        out.append(f"| {key} ({row['bitrate_MiBps']:.2f} MiB/s) | **ideal** | | {ideal['startup_s']:.2f} | 1× | 0 "
                   f"| 0 | {ideal['seek_s']:.2f} | 1× |")
        for tool, res in row["tools"].items():
            runs = res["runs"]
            st, sk = stat(runs, "startup_s"), stat(runs, "seek_s")
            out.append(f"| | {tool} | {len(runs)} / {len(res['failures'])} | {cell(st)} | "
                       f"{ratio(st, ideal['startup_s'])} | {cell(stat(runs, 'rebuffers'), '{:g}')} | "
                       f"{cell(stat(runs, 'rebuffer_s'))} | {cell(sk)} | {ratio(sk, ideal['seek_s'])} |")
    return "\n".join(out)


PAIRS = [("confluence", "rqbit"), ("confluence-mpv", "rqbit-mpv")]


def versus(rows):
    """confluence's median over rqbit's, per profile and player (the issue's targets are ≤ 0.8×)."""
    out = []
    for key, row in rows.items():
        for ours, peer in PAIRS:
            line = ratios(row["tools"], ours, peer)
            if line:
                out.append(f"- {key}: {ours} / {peer}: {line}")
    return "\n".join(out)


def ratios(tools, ours, peer):
    if ours not in tools or peer not in tools:
        return ""
    parts = []
    for m in ("startup_s", "seek_s", "rebuffer_s"):
        a, b = stat(tools[ours]["runs"], m), stat(tools[peer]["runs"], m)
        if a and b and b[0] > 0:
            parts.append(f"{m.replace('_s', '')} {a[0] / b[0]:.2f}×")
    return ", ".join(parts)


def failures(rows):
    out = []
    for key, row in rows.items():
        for tool, res in row["tools"].items():
            for f in res["failures"]:
                out.append(f"- {key} {tool}: {f}")
    return "\n".join(out)


def one_run(out, capacity):
    """A run's line in the log."""
    if "full_MiBps" in out:
        return (f"whole file at {out['full_MiBps']:.2f} MiB/s after the first bytes "
                f"({out['full_MiBps'] * 1024 * 1024 / capacity:.2f}× capacity), first bytes at "
                f"{out['first_bytes_s']:.2f} s, done at {out['full_s']:.2f} s")
    phases = "".join(f", {k[:-2]} at {out[k]:.2f} s" for k in ("header_s", "index_s") if k in out)
    return (f"startup {out['startup_s']:.2f} s{phases}, rebuffers {out['rebuffers']} "
            f"({out['rebuffer_s']:.2f} s), seek {out['seek_s']:.2f} s")


def full(rows):
    """The whole-file downloads (the `-full` clients) against the steady capacity."""
    out = []
    for key, row in rows.items():
        for tool, res in row["tools"].items():
            s = stat(res["runs"], "full_MiBps")
            if s:
                out.append(f"- {key}: {tool}: whole file {cell(s)} MiB/s after the first bytes, "
                           f"{s[0] / row['capacity_MiBps']:.2f}× the capacity ({row['capacity_MiBps']:.2f} MiB/s)")
    return "\n".join(out)
