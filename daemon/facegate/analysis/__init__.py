"""Facial attributes (emotion, age, gender) and liveness.

* :mod:`facegate.analysis.api` - ``analyze()``, DeepFace's attribute analysis (re-exported as
  ``facegate.analyze``);
* :mod:`facegate.analysis.analyzer` - the daemon's per-track :class:`~facegate.decision.Analyzer`;
* :mod:`facegate.analysis.liveness` - the daemon's per-track liveness checker (blink, 3-D motion);
* :mod:`facegate.analysis.antispoof` - why single-image anti-spoofing is refused.

Nothing is imported here, so ``import facegate.analysis`` loads no model.
"""
