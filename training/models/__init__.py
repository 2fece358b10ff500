"""Model definitions assembled from `training.layers`."""
