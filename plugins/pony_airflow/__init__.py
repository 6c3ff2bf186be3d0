"""Airflow glue for the DAGs (on sys.path through Airflow's plugins folder): assets, DAG defaults, the alert
notifier and quality-gate task helper, and operators translated from execution plans. The library (pony_tasks)
never imports this."""
