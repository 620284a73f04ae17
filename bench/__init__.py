"""fastconv benchmarks (installed as ``fastconv.bench``; run with ``fastconv bench``).

Each suite times fastconv against the plain NumPy reference and, when it is importable,
PyTorch, on fixed tables of layers; medians of repeats, ratios from the same run.
"""
SUITES = ("conv", "ops", "scaling")
