"""Where a running worker spends its time: py-spy samples, summarised as tables for the docs.

    python bench/profile_worker.py --pid PID --seconds 30 [--rate 100] [--record]
    python bench/profile_worker.py --raw profile.txt          # summarise an earlier `py-spy record -f raw`

Runs `py-spy record -f raw --function` on the process for --seconds (py-spy needs
ptrace rights: root, or kernel.yama.ptrace_scope=0), then prints

  1. the top 25 functions by self time (samples where the function itself was
     running, the leaf of the stack), over every sampled function;
  2. the top fieldstream functions by inclusive time (samples where the function
     was anywhere on the stack, counted once per sample even when recursive).

Percentages are of all samples py-spy kept. By default py-spy drops idle samples
(threads waiting in epoll, sleeping, blocked on a lock), so they are shares of the
time the process was actually busy; --idle keeps them. Frames are aggregated per
function (py-spy's --function: a frame's line is the function's first line).
fieldstream functions are those whose file is under a `fieldstream/` package
directory (the repository's or an installed copy).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int

    @property
    def where(self) -> str:
        """The file shortened: package-relative for libraries, stdlib/... for the standard library,
        repository-relative for fieldstream and the bench scripts."""
        path = self.file.replace("\\", "/")
        if "/site-packages/" in path:
            path = path.split("/site-packages/", 1)[1]
        elif "/lib/python3." in path:
            path = "stdlib/" + path.split("/lib/python3.", 1)[1].split("/", 1)[-1]
        else:
            try:
                path = str(Path(path).resolve().relative_to(ROOT))
            except (ValueError, OSError):
                pass
        return f"{path}:{self.line}" if self.line else path

    @property
    def is_fieldstream(self) -> bool:
        """fieldstream's own code, from the repository or installed."""
        path = self.file.replace("\\", "/")
        return "/fieldstream/" in path or path.startswith("fieldstream/")


def parse_frame(text: str) -> Frame:
    """`function (file:line)` as py-spy writes it; thread and process frames are kept as they are."""
    text = text.strip()
    if text.endswith(")") and " (" in text:
        function, where = text[:-1].rsplit(" (", 1)
        file, _, line = where.rpartition(":")
        if file and line.isdigit():
            return Frame(function, file, int(line))
        return Frame(function, where, 0)
    return Frame(text, "", 0)


def parse_raw(lines: list[str]) -> tuple[Counter, Counter, int]:
    """(self samples per frame, inclusive samples per frame, total samples) of py-spy's raw format:
    one line per distinct stack, root first, frames joined by ';', then a space and the sample count."""
    self_counts: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [parse_frame(f) for f in stack.split(";") if f]
        frames = [f for f in frames if f.file]  # drop "process 123"/"thread 0x.." pseudo-frames
        if not frames:
            continue
        total += n
        self_counts[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return self_counts, inclusive, total


def py_spy() -> str:
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def record_raw(pid: int, seconds: float, rate: int, idle: bool, subprocesses: bool, out: Path) -> None:
    cmd = [py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
           "--format", "raw", "--function", "--full-filenames", "--output", str(out), "--nonblocking"]
    if idle:
        cmd.append("--idle")
    if subprocesses:
        cmd.append("--subprocesses")
    print(f"sampling pid {pid} for {seconds:g}s at {rate} Hz: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"py-spy failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")


def pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "–"


def tables(self_counts: Counter, inclusive: Counter, total: int, top: int, top_fs: int) -> tuple[str, str]:
    rows = [[str(i), f"`{f.function}`", f"`{f.where}`", f"{n:,}", pct(n, total), pct(inclusive[f], total)]
            for i, (f, n) in enumerate(self_counts.most_common(top), 1)]
    by_self = markdown_table(["#", "function", "where", "self samples", "self %", "inclusive %"], rows,
                             align="rllrrr")
    fs = sorted((f for f in inclusive if f.is_fieldstream), key=lambda f: -inclusive[f])[:top_fs]
    rows = [[str(i), f"`{f.function}`", f"`{f.where}`", f"{inclusive[f]:,}", pct(inclusive[f], total),
             pct(self_counts.get(f, 0), total)] for i, f in enumerate(fs, 1)]
    if not rows:
        rows = [["–", "(no fieldstream function was sampled)", "", "", "", ""]]
    by_inclusive = markdown_table(["#", "fieldstream function", "where", "inclusive samples", "inclusive %",
                                   "self %"], rows, align="rllrrr")
    return by_self, by_inclusive


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pid", type=int, help="The worker process to sample")
    src.add_argument("--raw", type=Path, help="Summarise an existing py-spy raw file instead")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=int, default=100, help="Samples per second")
    ap.add_argument("--idle", action="store_true", help="Keep idle samples (waiting threads)")
    ap.add_argument("--subprocesses", action="store_true", help="Also sample the worker's child processes")
    ap.add_argument("--top", type=int, default=25, help="Rows of the self-time table")
    ap.add_argument("--top-fieldstream", type=int, default=25, help="Rows of the fieldstream table")
    ap.add_argument("--keep", type=Path, help="Keep the raw profile at this path (flame graphs: flamegraph.pl)")
    ap.add_argument("--label", default="", help="What the worker was doing, for the recorded section")
    ap.add_argument("--record", action="store_true", help="Append a section to docs/BENCHMARKS.md")
    args = ap.parse_args()

    if args.raw:
        raw = args.raw
    else:
        if not os.path.exists(f"/proc/{args.pid}"):
            raise SystemExit(f"no process {args.pid}")
        raw = args.keep or Path(tempfile.mkstemp(prefix="py-spy-", suffix=".txt")[1])
        record_raw(args.pid, args.seconds, args.rate, args.idle, args.subprocesses, raw)
    try:
        self_counts, inclusive, total = parse_raw(raw.read_text().splitlines())
    finally:
        if not args.raw and not args.keep:
            raw.unlink(missing_ok=True)
    if not total:
        raise SystemExit("no samples (was the process idle? try --idle)")
    by_self, by_inclusive = tables(self_counts, inclusive, total, args.top, args.top_fieldstream)
    source = f"pid {args.pid}, {args.seconds:g} s at {args.rate} Hz" if args.pid else str(args.raw)
    idle = "idle samples kept" if args.idle else "idle samples dropped (shares of busy time)"
    print(f"\n{total:,} samples ({source}; {idle})\n")
    print(f"Top {args.top} functions by self time\n")
    print(by_self)
    print(f"\nTop fieldstream functions by inclusive time\n")
    print(by_inclusive)
    if args.keep and args.pid:
        print(f"\nraw profile kept at {args.keep}")
    if args.record:
        title = "Worker profile" + (f": {args.label}" if args.label else "")
        body = (f"{total:,} py-spy samples ({source}; {idle}).\n\n**Top {args.top} functions by self time**\n\n"
                f"{by_self}\n\n**Top fieldstream functions by inclusive time**\n\n{by_inclusive}")
        record(title, body)


if __name__ == "__main__":
    main()
