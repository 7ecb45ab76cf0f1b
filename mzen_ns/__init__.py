"""mzen: multi-zoom NeRF with unknown poses, as a nerfstudio plugin.

The method's core is at the top of the package (camera model, phase policy, model, pipeline,
trainer, presets); ``priming/``, ``evaluation/`` and ``synthetic/`` are libraries it uses, and
``scripts/`` holds the console commands. ``docs/development.md`` describes the layout.

Importing this package is cheap: it needs neither CUDA nor tinycudann.
"""

__version__ = "0.2.0"
