"""Dataparsers of the mzen plugin: the FF-MZN multi-zoom scene format (``docs/format.md``)."""
