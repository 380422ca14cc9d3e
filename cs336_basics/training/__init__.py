"""Loss, optimizer, schedules, data loading, checkpoints and the training loop (filled in by the training issue)."""
