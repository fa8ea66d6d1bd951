"""Face embedders. Use :func:`facegate.embedders.registry.build_embedder`."""
