"""Registers the Pony Pipeline UI with Airflow: the rating tool and reports (FastAPI app at /pony) and their menu
links. Airflow loads every module in the plugins folder and looks for AirflowPlugin subclasses."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from pony_airflow.ui.app import BarePrefixRedirect, app


class PonyPipelineUI(AirflowPlugin):
    name = "pony_pipeline_ui"
    fastapi_apps = [{"app": app, "url_prefix": "/pony", "name": "Pony Pipeline rating tool and reports"}]
    fastapi_root_middlewares = [{"middleware": BarePrefixRedirect, "args": [], "kwargs": {"prefix": "/pony"},
                                 "name": "/pony → /pony/rate"}]  # fmt: skip
    external_views = [
        {"name": "Rate images", "href": "/pony/rate", "destination": "nav", "category": "Pony Pipeline",
         "url_route": "pony-rate"},
        {"name": "Pipeline reports", "href": "/pony/reports", "destination": "nav", "category": "Pony Pipeline",
         "url_route": "pony-reports"},
        {"name": "Works (same picture)", "href": "/pony/works", "destination": "nav", "category": "Pony Pipeline",
         "url_route": "pony-works"},
    ]  # fmt: skip
