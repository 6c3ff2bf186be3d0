"""Data-quality checks with Great Expectations 1.x, called directly (no Airflow provider): see :mod:`.checks`."""
