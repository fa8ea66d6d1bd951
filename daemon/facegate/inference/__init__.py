"""Model runtime: the TFLite interpreter wrapper and model manifests."""
