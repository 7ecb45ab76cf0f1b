"""Compiled CPU kernels, built with the machine's C++ compiler at first use."""
