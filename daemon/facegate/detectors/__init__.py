"""Face detectors. Use :func:`facegate.detectors.registry.build_detector`."""
