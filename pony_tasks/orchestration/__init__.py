"""What the DAGs run, without Airflow: stage commands and planning (``stages``), light worker-side work (``tasks``:
quality gates, lookups, promotion) and the local Airflow environment (``standalone``). The Airflow side —
assets, defaults, notifiers, operators — lives in ``plugins/pony_airflow``."""
