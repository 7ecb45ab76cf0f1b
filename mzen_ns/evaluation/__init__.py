"""Evaluation: image metrics (:mod:`~mzen_ns.evaluation.metrics`, no nerfstudio model code), camera
errors against ground truth (:mod:`~mzen_ns.evaluation.alignment`), registration of held-out views
(:mod:`~mzen_ns.evaluation.registration`) and the ``ns-eval`` entry (:mod:`~mzen_ns.evaluation.evaluate`).
The protocol is described in ``docs/method.md``."""
