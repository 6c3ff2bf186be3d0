"""Cross-site popularity normalisation: a score in [0, 1] per post, comparable across sites, ratings and ages."""
