from __future__ import annotations

import time

import click

from pony_tasks.boorus.adapters import ADAPTERS


@click.command("fake-booru")
@click.argument("site", type=click.Choice(sorted(ADAPTERS)))
@click.option("--port", default=0, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--seed", default=621, show_default=True, help="Sample corpus seed.")
@click.option("--faults", type=click.Choice(["none", "heavy"]), default="none", show_default=True)
@click.option("--require-auth", is_flag=True, help="Answer 401 to requests without credentials.")
def fake_booru_command(site: str, port: int, seed: int, faults: str, require_auth: bool) -> None:
    """Serve SITE's API and images from the sample corpus on 127.0.0.1 until interrupted."""
    from pony_tasks.fakes.corpus import SampleCorpus
    from pony_tasks.fakes.server import FakeBooru, Faults

    booru = FakeBooru(site, SampleCorpus(seed=seed), Faults.heavy() if faults == "heavy" else Faults(),
                      require_auth=require_auth)  # fmt: skip
    url = booru.start(port)
    click.echo(f"fake {site} at {url}  (try: pony scrape {site} --base-url {url}); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    finally:
        booru.stop()
