"""mzen: multi-zoom NeRF with unknown poses, as a nerfstudio plugin.

Importing this package is cheap: it needs neither CUDA nor tinycudann.
"""

__version__ = "0.1.0"
