"""The DeepFace-style library behind :mod:`facegate.api` (import from there): typed results, shared option
checks, one module per function group (faces/represent, verify, find/enroll). No imports here, so that
``import facegate`` stays light."""
