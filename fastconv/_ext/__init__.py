"""Compiled kernels (built from src/*.pyx). Nothing here validates its input."""
