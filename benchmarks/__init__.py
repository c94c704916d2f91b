"""Speed and memory benchmarks of scaleinv, every figure a ratio against a peer measured in the
same run (``scaleinv bench``; see :mod:`scaleinv.cli.bench`)."""
