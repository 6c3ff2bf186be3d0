"""Image files: download from the sites, verify, decode safely, store content-addressed."""
