"""Images: datasets, a feature classifier and the FID / precision / recall metrics built on it."""
