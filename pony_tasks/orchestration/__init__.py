"""Glue between the library and Airflow: stage commands and planning (``stages``, no Airflow), operators built from
execution plans (``operators``), DAG defaults and alert notifiers (``defaults``, ``notifiers``)."""
