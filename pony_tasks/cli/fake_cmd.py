from __future__ import annotations

import time

import click

from pony_tasks.boorus.adapters import ADAPTERS


@click.command("fake-booru")
@click.argument("site", type=click.Choice(sorted(ADAPTERS)))
@click.option("--port", default=0, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--seed", default=621, show_default=True, help="Sample corpus seed.")
@click.option("--faults", type=click.Choice(["none", "heavy"]), default="none", show_default=True)
@click.option("--require-auth/--no-require-auth", default=None,
              help="Answer 401 to requests without credentials (default: where the real site does — Gelbooru).")
@click.option("--posts", "posts_per_site", default=520, show_default=True, help="Posts per site in the corpus.")
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to every answer.")
@click.option("--warm", is_flag=True, help="Generate all images before serving (steady answer times).")
def fake_booru_command(
    site: str, port: int, seed: int, faults: str, require_auth: bool | None, posts_per_site: int, latency: float,
    warm: bool,
) -> None:
    """Serve SITE's API and images from the sample corpus on 127.0.0.1 until interrupted.

    GET /_fake/log returns the server's request log (arrival times, faults) as JSON.
    """
    from pony_tasks.fakes.corpus import SampleCorpus
    from pony_tasks.fakes.server import FakeBooru, Faults

    booru = FakeBooru(site, SampleCorpus(seed=seed, posts_per_site=posts_per_site),
                      Faults.heavy() if faults == "heavy" else Faults(), require_auth=require_auth,
                      latency_seconds=latency)  # fmt: skip
    if warm:
        booru.warm()
    url = booru.start(port)
    click.echo(f"fake {site} at {url}  (try: pony scrape {site} --base-url {url}); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    finally:
        booru.stop()
