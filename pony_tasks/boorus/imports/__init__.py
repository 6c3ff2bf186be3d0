"""Bulk sources besides the live APIs: a site's database export (e621's ``db_export`` CSVs) and mirror tables of API
records (Parquet / JSON Lines). Each import streams its file in bounded memory, stores what a scrape of the same
posts stores, records its progress per file (``booru_import``) and quarantines a bad row with its line number."""
