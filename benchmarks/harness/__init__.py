"""The harness behind benchmarks/run.py, one module per part: the worker side (`workers_common`, `train_worker`,
`llava`, `workers`: what a worker process measures), the parent side (`host`: worker processes and interleaved
rounds; `plans`: which groups a run measures; `analysis`: ratios of medians; `report`: the markdown tables), and
`stats`, the statistics and table formatting every benchmark script shares. Imported as `harness` (the scripts in
benchmarks/ run with benchmarks/ first on sys.path)."""
