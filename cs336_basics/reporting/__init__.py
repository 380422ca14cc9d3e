"""Reading finished (or running) runs into pages and pictures: run reports, sweep reports, learning curves.

- :mod:`.run_report`: ``cs336 report RUN_DIR``, one Markdown page per run;
- :mod:`.sweep_report`: the results table and the one-page report of a sweep;
- :mod:`.plotting`: ``cs336 plot``, one metric across runs (PNG/SVG and a JSON sidecar);
- :mod:`.convergence`: power-law fit of a validation curve and a plateau verdict;
- :mod:`.figures`: the headless matplotlib backend and atomic figure files.

Everything reads run directories through :mod:`cs336_basics.runs.records`, so it
works on runs made by ``cs336 train``, by a sweep or by hand.
"""
