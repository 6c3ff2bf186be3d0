"""CLIP image embeddings (open_clip): model loading, parallel decoding, sharded fp16 output in object storage."""
