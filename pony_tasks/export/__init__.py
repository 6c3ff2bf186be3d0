"""Training-set export: images plus captions of the active caption set, as kohya folders or webdataset shards."""
