"""The console commands (``mzen-make-scene``, ``mzen-export-cameras``, ``mzen-render``,
``mzen-bench``, ``mzen-viewer-screenshot``): argument parsing and output around the library; no
other module imports them. ``docs/tools.md`` describes each."""
