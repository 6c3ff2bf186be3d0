"""Image fetch at a backlog (issue 29): four file hosts on 127.0.0.1 with latency, a few hundred thousand posts
without a file, fetched the way the DAG fetches them (``pony images fetch --max-minutes``, a process of its own).

The posts are written straight into PostgreSQL (one site in four each, a 32×32 PNG of noise per post — distinct
bytes, the site's md5 right); each host serves its site's files after ``--latency`` seconds. Three measurements:

1. **Memory as the backlog grows**: one batch of ``--seconds`` with half the posts pending, then one with all of
   them — the fetch process's peak RSS (sampled every 0.1 s) should not grow with the backlog.
2. **The hosts in parallel**: each host's request rate over each batch against ``--rate`` (the per-host limit), and
   when the first batch ended — each DAG run is one batch and updates the ``images`` asset when it ends.
3. **Kill and resume**: a fetch killed (SIGKILL) after ``--seconds``/2, then a resumed batch: every file the killed
   run downloaded is recorded after the resume (lost 0), and how many files were downloaded twice (each outcome is
   committed as it is recorded: at most the downloads in flight when it was killed).

    .venv/bin/python benchmarks/fetch.py [--posts 200000] [--rate 10] [--latency 0.1] [--seconds 60]

Prints a table and as its last line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

PONY = str(Path(sys.executable).parent / "pony")
SITES = ("danbooru", "e621", "derpibooru", "gelbooru")


def picture(site_index: int, post_id: int) -> bytes:
    pixels = np.random.default_rng(site_index * 100_000_000 + post_id).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


class FileHost:
    """One site's file server: ``/data/<post id>.png`` after ``latency`` seconds; every arrival logged."""

    def __init__(self, site_index: int, latency: float) -> None:
        self.arrivals: list[tuple[float, int]] = []  # (time.monotonic(), post id)
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_GET(self) -> None:  # noqa: N802
                arrived = time.monotonic()
                try:
                    post_id = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                except ValueError:
                    self.send_error(404)
                    return
                host.arrivals.append((arrived, post_id))
                time.sleep(latency)
                data = picture(site_index, post_id)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the killed fetch
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def rate(self, start: float, end: float) -> float:
        times = sorted(t for t, _ in self.arrivals if start <= t <= end)
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def add_posts(settings, hosts: dict[str, FileHost], first: int, count: int) -> None:
    """``count`` posts on each site, ids ``first`` … ``first + count - 1``, without a file yet."""
    from pony_tasks.db import connect

    with connect(settings) as conn, conn.cursor() as cur:
        for index, site in enumerate(SITES):
            rows = io.StringIO()
            for post_id in range(first, first + count):
                md5 = hashlib.md5(picture(index, post_id)).hexdigest()
                rows.write(f"{site}\t{post_id}\tgeneral\t{{}}\t{hosts[site].base_url}/data/{post_id}.png\t{md5}\n")
            rows.seek(0)
            cur.copy_expert("COPY booru_post (site, post_id, rating, tags, file_url, md5) FROM STDIN", rows)
        conn.commit()


def pending(settings) -> int:
    from pony_tasks.db import connect
    from pony_tasks.images.fetch import PENDING

    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM booru_post p WHERE {PENDING}", {"retry": False})
        return cur.fetchone()[0]


def recorded(settings) -> set[tuple[str, int]]:
    from pony_tasks.db import connect

    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT site, post_id FROM booru_post_image UNION SELECT site, post_id FROM image_quarantine")
        return set(cur.fetchall())


def fetch(environment: dict, log: Path, minutes: float | None = None, kill_after: float | None = None) -> dict:
    """One ``pony images fetch`` process: its wall time and peak RSS (MiB); killed with SIGKILL after
    ``kill_after`` seconds if given."""
    command = [PONY, "images", "fetch"] + (["--max-minutes", f"{minutes:.4f}"] if minutes else [])
    started = time.monotonic()
    peak = 0
    with log.open("a") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak = max(peak, int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]))
            except (FileNotFoundError, StopIteration, ProcessLookupError):
                pass
            if kill_after is not None and time.monotonic() - started > kill_after:
                process.send_signal(signal.SIGKILL)
                process.wait()
                break
            time.sleep(0.1)
    if kill_after is None and process.returncode != 0:
        raise SystemExit(f"pony images fetch failed ({process.returncode}); see {log}")
    return {"start": started, "end": time.monotonic(), "seconds": round(time.monotonic() - started, 1),
            "peak_rss_mib": round(peak / 1024, 1)}  # fmt: skip


def batch_line(name: str, run: dict, hosts: dict[str, FileHost], rate: float, before: int, after: int) -> dict:
    rates = {site: round(host.rate(run["start"], run["end"]), 2) for site, host in hosts.items()}
    share = min(rates.values()) / rate
    print(f"{name:28s} {before:>9,} {run['seconds']:>7.1f} s {run['peak_rss_mib']:>9.1f} MiB {before - after:>8,}  "
          + "  ".join(f"{r:5.2f}" for r in rates.values()) + f"   {share:5.1%}", flush=True)  # fmt: skip
    return {**{k: v for k, v in run.items() if k not in ("start", "end")}, "pending_before": before,
            "recorded": before - after, "host_rates": rates, "slowest_host_share_of_limit": round(share, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=200_000, help="posts without a file, over the four sites")
    parser.add_argument("--rate", type=float, default=10.0, help="each host's limit, requests/s")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each host takes to answer")
    parser.add_argument("--seconds", type=float, default=60.0, help="each batch's length")
    args = parser.parse_args()

    from pony_tasks.config import load_settings
    from pony_tasks.db import connect, upgrade
    from pony_tasks.db.embedded import ensure_embedded_server, stop_embedded_server
    from pony_tasks.fakes.local_sites import FAKE_CONTACT

    directory = Path(tempfile.mkdtemp(prefix="pony-fetch-"))
    home = directory / "home"
    hosts = {site: FileHost(index, args.latency) for index, site in enumerate(SITES)}
    environment = {**os.environ, "PONY_HOME": str(home), "PONY_SCRAPE_CONTACT": FAKE_CONTACT,
                   "PONY_BOORU_BASE_URLS": json.dumps({site: host.base_url for site, host in hosts.items()}),
                   "PONY_IMAGE_HOST_RATE_LIMIT": str(args.rate)}  # fmt: skip
    for name in ("PONY_DATABASE_URL", "PONY_STORAGE_URL"):
        environment.pop(name, None)
    settings = load_settings(home=home)
    ensure_embedded_server(home, keep_running=True)
    log = directory / "fetch.log"
    try:
        with connect(settings, check_schema=False) as conn:
            upgrade(conn)
        half = args.posts // len(SITES) // 2
        started = time.monotonic()
        add_posts(settings, hosts, 1, half)
        print(f"{half * len(SITES):,} posts written in {time.monotonic() - started:.0f} s; each host {args.rate}/s, "
              f"{args.latency * 1000:.0f} ms latency; batches of {args.seconds:.0f} s\n", flush=True)  # fmt: skip
        print(f"{'batch':28s} {'pending':>9s} {'wall':>9s} {'peak RSS':>13s} {'recorded':>8s}  "
              + "  ".join(f"{s[:5]:>5s}" for s in SITES) + "   slowest/limit")  # fmt: skip
        results: dict = {"posts": args.posts, "rate": args.rate, "latency": args.latency, "seconds": args.seconds}
        minutes = args.seconds / 60
        before = pending(settings)
        first = fetch(environment, log, minutes)
        results["batch_half"] = batch_line("1: half the posts pending", first, hosts, args.rate, before,
                                           pending(settings))  # fmt: skip
        results["first_batch_ended_s"] = first["seconds"]
        add_posts(settings, hosts, half + 1, args.posts // len(SITES) - half)
        before = pending(settings)
        second = fetch(environment, log, minutes)
        results["batch_all"] = batch_line("2: all the posts pending", second, hosts, args.rate, before,
                                          pending(settings))  # fmt: skip
        results["peak_rss_ratio_all_to_half"] = round(second["peak_rss_mib"] / first["peak_rss_mib"], 3)

        downloaded_before = {site: Counter(p for _, p in host.arrivals) for site, host in hosts.items()}
        killed = fetch(environment, log, kill_after=args.seconds / 2)
        during_kill = {site: Counter(p for _, p in host.arrivals) - downloaded_before[site]
                       for site, host in hosts.items()}  # fmt: skip
        kept = recorded(settings)
        before = pending(settings)
        resumed = fetch(environment, log, minutes / 2)
        kept_after = recorded(settings)
        results["resumed"] = batch_line("3: resumed after a SIGKILL", resumed, hosts, args.rate, before,
                                        pending(settings))  # fmt: skip
        fetched_by_killed = {(site, p) for site, counts in during_kill.items() for p in counts}
        lost = len(fetched_by_killed - kept_after)
        twice = sum(n - 1 for host in hosts.values() for n in Counter((p for _, p in host.arrivals)).values() if n > 1)
        uncommitted = len(fetched_by_killed - kept)
        results["kill"] = {"killed_after_s": killed["seconds"], "downloaded_by_killed_run": len(fetched_by_killed),
                           "not_committed_at_kill": uncommitted, "lost_after_resume": lost,
                           "downloaded_twice": twice}  # fmt: skip
        print(f"\nkilled after {killed['seconds']} s: it had downloaded {len(fetched_by_killed):,} files, "
              f"{uncommitted} not yet committed; after the resume {lost} lost, {twice} downloaded twice "
              "(each outcome is committed as it is recorded)")  # fmt: skip
        print(f"peak RSS with all the posts pending / with half: {results['peak_rss_ratio_all_to_half']:.3f}; "
              f"first batch (the first images asset event) ended after {first['seconds']} s")  # fmt: skip
        print(json.dumps(results))
    finally:
        for host in hosts.values():
            host.server.shutdown()
        stop_embedded_server(home)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
