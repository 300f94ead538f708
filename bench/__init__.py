"""c2m-pulse benchmarks. Results are written down in bench/RESULTS.md, never asserted in CI."""
