"""The rating tool and reports inside the Airflow UI (a FastAPI app mounted by the plugin at /pony)."""
