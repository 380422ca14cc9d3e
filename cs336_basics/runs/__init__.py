"""Everything on disk about a run: the directory layout, metrics, checkpoints, trained models, run records.

- :mod:`.layout`: run and dataset directory layout, and the one rule that finds a run's data;
- :mod:`.metrics`: ``metrics.jsonl`` (append-only, crash-safe), its event and field names, the stop reasons;
- :mod:`.checkpoint`: the checkpoint file format and the ``checkpoints/`` folder;
- :mod:`.train_state`: what a training checkpoint holds (:class:`~.train_state.TrainState`);
- :mod:`.trained`: loading a trained model for inference, safetensors export;
- :mod:`.records`: reading finished (or running) runs: curves, summaries, config differences.

The training loop writes through these modules and every later command
(generate, eval, report, plot, sweep, export) reads through them, so the layout
is spelled out in one place. Import the submodules directly: this package
imports nothing itself, so reading run records does not import torch.
"""
