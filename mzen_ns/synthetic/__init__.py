"""Synthetic multi-zoom scenes with ground truth: the ray caster (:mod:`~mzen_ns.synthetic.raycast`),
the scene maker behind ``mzen-make-scene`` (:mod:`~mzen_ns.synthetic.scene_maker`) and the demo
scene ``ns-train mzen`` trains on without ``--data`` (:mod:`~mzen_ns.synthetic.demo`). Nothing here
imports nerfstudio or the method."""
