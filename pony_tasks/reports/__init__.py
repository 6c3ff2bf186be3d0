"""Report plots (PNG bytes) for the Airflow UI reports page and anyone else."""
