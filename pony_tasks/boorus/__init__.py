"""Booru ingestion: site adapters, the scraping engine, persistence, export, and fake boorus for tests and the demo."""
