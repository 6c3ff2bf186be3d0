"""Training captions: quality tags (versioned schemes), special tags, cleaned content tags."""
