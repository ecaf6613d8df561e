"""Training and evaluation data: the soundscape catalog, its fetcher, scene mixing, dataset loaders."""
