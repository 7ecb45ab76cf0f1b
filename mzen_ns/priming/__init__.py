"""Priming: where each zoom-in (and, at evaluation, each held-out view) starts.

- :mod:`~mzen_ns.priming.centred`: the paper's crop-and-match (central crop, RGB MSE).
- :mod:`~mzen_ns.priming.search`: the zoom-in's footprint searched anywhere in a candidate (NCC).
- :mod:`~mzen_ns.priming.verify`: each placement refined to the rotation and zoom of a camera
  turning about the candidate's optical centre.
- :mod:`~mzen_ns.priming.plan`: the three methods, chains through shallower zoom-ins, the plan.
- :mod:`~mzen_ns.priming.report`: the console table, the picture and the JSON rows.

Nothing here imports nerfstudio or mzen's model: priming works on images and camera numbers
(:class:`~mzen_ns.priming.plan.Views`). The method is described in ``docs/method.md``.
"""
