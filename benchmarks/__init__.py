"""Benchmarks of the package: quality on the real datasets, the recipe table (ours, a MONAI peer, ablations),
speed and memory against MONAI and naive implementations, and the GPU check.

A package, run from the repository root as modules (``python -m benchmarks.quality``,
``python -m benchmarks.arms``, ``python -m benchmarks.bench_inference``, ...); the scripts share
:mod:`benchmarks.common` (paths, the machine line, JSON and atomic writes, training and scoring one
experiment) and import each other only one way (``quality`` -> ``arms`` -> ``peer_monai`` -> ``common``;
``tests/test_benchmarks_package.py`` checks that the imports of ``unet`` and ``benchmarks`` form no cycle).
Results are written to ``benchmarks/results/``.
"""
