"""Facial landmark providers. Use :func:`facegate.landmarks.registry.build_landmarker`."""
