"""The aesthetic model: a small head on CLIP embeddings, trained on human 1–5 ratings, scoring every image 0..1."""
