"""Great Expectations Data Docs without the internet (issue 27).

GX's pages load their styles and scripts from public CDNs (Bootstrap, jQuery, bootstrap-table — which builds the
index's table of validations —, Font Awesome, Vega, …). Offline, as production clusters often are, the index is
unstyled, lists nothing, and each page waits seconds for every CDN to time out. So the same files are fetched once,
at install time, from the npm registry (pinned versions, each tarball checked against its registry integrity hash)
into :func:`assets_dir`, and :func:`rewrite_html` points a page at them when the UI plugin serves it
(``/pony/quality-docs/…``, assets under ``/pony/docs-assets/…``). External links in the text (GX's documentation)
stay as they are; the logo and tracking image GX loads from its S3 bucket are dropped.

``pony quality docs-assets`` fetches them (``make`` does it with the install; the Airflow image's Dockerfile too).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity (sha512, base64)
    keep: tuple[str, ...]  # folders or files of the package (below package/) that pages use


PACKAGES = (
    Package("bootstrap", "4.3.1",
            "sha512-rXqOmH1VilAt2DyPzluTi2blhk17bO7ef+zLLPlWvG494pDxcM234pJ8wTc/6R40UWizAIIMgxjvxZg5kmsbag==",
            ("dist/css/bootstrap.min.css", "dist/js/bootstrap.min.js")),
    Package("jquery", "3.7.1",
            "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
            ("dist/jquery.min.js",)),
    Package("popper.js", "1.12.9",
            "sha512-s0EEi9xiSCdqz9lV4IiVH5yIZnDX/U1t0tCjB+0jXx9jW8lrR7kOpVupiUg175ogqVoudpDXHF1p6dKATCHMeg==",
            ("dist/umd/popper.min.js",)),
    Package("bootstrap-datepicker", "1.9.0",
            "sha512-9rYYbaVOheGYxjOr/+bJCmRPihfy+LkLSg4fIFMT9Od8WwWB/MB50w0JO1eBgKUMbb7PFHQD5uAfI3ArAxZRXA==",
            ("dist/js/bootstrap-datepicker.min.js", "dist/css/bootstrap-datepicker.min.css")),
    Package("bootstrap-table", "1.19.1",
            "sha512-WvV+l1AI/C+zThaKmfHmi/IuayVNB0qdFyEhFx1jyZhO0oLtNJNANkCR3rvJf6Dkh72dsLElxpE/bzK9seEQLA==",
            ("dist/bootstrap-table.min.js", "dist/bootstrap-table.min.css", "dist/extensions/filter-control")),
    Package("@fortawesome/fontawesome-free", "6.6.0",
            "sha512-60G28ke/sXdtS9KZCpZSHHkCbdsOGEhIUGlwq6yhY74UpTiToIh8np7A8yphhM4BWsvNFtIvLpi4co+h9Mr9Ow==",
            ("css/all.min.css", "webfonts")),
    Package("@forevolve/bootstrap-dark", "1.1.0",
            "sha512-A3ucpEpxPoTVO490lZZCfjPXxv832l7mm1IxX3bXyxvgwnPGXDLyh7dWrphXKO8YBAu3EswbBEu3VSW8NRMW3A==",
            ("dist/css/bootstrap-prefers-dark.css",)),
    Package("vega", "5.33.1",
            "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw==",
            ("build/vega.min.js",)),
    Package("vega-lite", "5.23.0",
            "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA==",
            ("build/vega-lite.min.js",)),
    Package("vega-embed", "6.29.0",
            "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q==",
            ("build/vega-embed.min.js",)),
)  # fmt: skip

# What GX 1.x's templates load (pattern of the URL → the file under assets_dir()); a version in a CDN URL that
# differs from ours (bootstrap-table's filter-control css is asked for at 1.19.0) is served the pinned one.
URL_MAP = (
    (r"https://maxcdn\.bootstrapcdn\.com/bootstrap/[\d.]+/css/bootstrap\.min\.css",
     "bootstrap/dist/css/bootstrap.min.css"),
    (r"https://stackpath\.bootstrapcdn\.com/bootstrap/[\d.]+/js/bootstrap\.min\.js",
     "bootstrap/dist/js/bootstrap.min.js"),
    (r"https://code\.jquery\.com/jquery-[\d.]+\.min\.js", "jquery/dist/jquery.min.js"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/popper\.js/[\d.]+/umd/popper\.min\.js",
     "popper.js/dist/umd/popper.min.js"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/bootstrap-datepicker/[\d.]+/js/bootstrap-datepicker\.min\.js",
     "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/bootstrap-datepicker/[\d.]+/css/bootstrap-datepicker\.min\.css",
     "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/font-awesome/[\d.]+/css/all\.min\.css",
     "@fortawesome/fontawesome-free/css/all.min.css"),
    (r"https://unpkg\.com/bootstrap-table@[\d.]+/dist/(bootstrap-table\.min\.(?:js|css)|extensions/filter-control/"
     r"bootstrap-table-filter-control\.min\.(?:js|css))", r"bootstrap-table/dist/\1"),
    (r"https://cdn\.jsdelivr\.net/npm/@forevolve/bootstrap-dark@[\d.]+/dist/css/bootstrap-prefers-dark\.css",
     "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css"),
    (r"https://cdn\.jsdelivr\.net/npm/vega@5", "vega/build/vega.min.js"),
    (r"https://cdn\.jsdelivr\.net/npm/vega-lite@5", "vega-lite/build/vega-lite.min.js"),
    (r"https://cdn\.jsdelivr\.net/npm/vega-embed@6", "vega-embed/build/vega-embed.min.js"),
)  # fmt: skip
_GX_S3_IMAGE = re.compile(r'<img[^>]*src="https://great-expectations-web-assets\.s3[^"]*"[^>]*>')
REGISTRY = "https://registry.npmjs.org"


def assets_dir() -> Path:
    """Where the assets live: ``PONY_DOCS_ASSETS``, else ``share/pony/docs-assets`` in this Python environment."""
    return Path(os.environ.get("PONY_DOCS_ASSETS") or Path(sys.prefix) / "share" / "pony" / "docs-assets")


def missing_assets(directory: Path | None = None) -> list[str]:
    """The kept files and folders not present under ``directory`` (empty: every page renders offline)."""
    directory = directory or assets_dir()
    return [f"{package.name}/{keep}" for package in PACKAGES for keep in package.keep
            if not (directory / package.name / keep).exists()]  # fmt: skip


def fetch_assets(directory: Path | None = None, registry: str | None = None) -> Path:
    """Download every package's tarball (``registry``: ``PONY_NPM_REGISTRY``, else npm's), check its sha512 against
    the pinned integrity, and unpack the kept files under ``directory``; packages already there are skipped."""
    directory = directory or assets_dir()
    registry = (registry or os.environ.get("PONY_NPM_REGISTRY") or REGISTRY).rstrip("/")
    for package in PACKAGES:
        target = directory / package.name
        stamp = target / f".{package.version}"
        if stamp.exists():
            continue
        base = package.name.rsplit("/", 1)[-1]
        url = f"{registry}/{package.name}/-/{base}-{package.version}.tgz"
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a pinned https registry URL
            data = response.read()
        digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != package.integrity:
            raise ValueError(f"{url}: sha512 {digest} is not the pinned {package.integrity} — not unpacked")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                inside = member.name.split("/", 1)[-1]
                if member.isfile() and any(inside == keep or inside.startswith(keep + "/") for keep in package.keep):
                    path = target / inside
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(archive.extractfile(member).read())
        stamp.write_text(url + "\n")
    return directory


def rewrite_html(html: str, prefix: str = "/pony/docs-assets") -> str:
    """A Data Docs page pointing at the local assets (served under ``prefix``) instead of the CDNs."""
    for pattern, target in URL_MAP:
        html = re.sub(pattern, lambda match, target=target: f"{prefix}/{match.expand(target)}", html)
    return _GX_S3_IMAGE.sub("", html)
