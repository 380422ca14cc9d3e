"""What a person reads while a run trains: one rounded line per log interval and per evaluation, and a summary.

nanoGPT-style lines, the same with or without a terminal (on a terminal they are
written above the progress bar, which stays visible at the end)::

    step 300/2168 | train 3.412 | lr 2.9e-03 | 11.5k tok/s | 2m13s elapsed, 7m40s left
    step 300/2168 | train 3.412 | val 3.520 (32,768-token subset) | 11.5k tok/s | 2m13s elapsed, 7m40s left

and at the end the whole-file validation metrics, labelled as such::

    validation, whole file (221,719 tokens): loss 3.126 nats/token | perplexity 22.8 | 1.239 bits/byte

Pure functions of the numbers, so they are tested without training anything.
"""

from __future__ import annotations

import math


def duration(seconds: float) -> str:
    """``42s``, ``2m13s``, ``1h05m``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def rate(tokens_per_s: float) -> str:
    """``850 tok/s``, ``11.5k tok/s``, ``1.2M tok/s``."""
    if not math.isfinite(tokens_per_s):
        return "? tok/s"
    if tokens_per_s >= 1e6:
        return f"{tokens_per_s / 1e6:.1f}M tok/s"
    if tokens_per_s >= 1e4:
        return f"{tokens_per_s / 1e3:.1f}k tok/s"
    return f"{tokens_per_s:,.0f} tok/s"


def loss(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if math.isfinite(value) else str(value)


def timing(elapsed: float, step: int, start_step: int, total: int) -> str:
    """``2m13s elapsed, 7m40s left``: the time left extrapolates this process's own steps per second."""
    done = step - start_step
    left = (total - step) * elapsed / done if done > 0 else float("nan")
    return f"{duration(elapsed)} elapsed, {duration(left)} left"


def progress_line(step: int, total: int, train_loss: float | None, tokens_per_s: float, elapsed: float,
                  start_step: int, *, lr: float | None = None, val_loss: float | None = None,
                  val_tokens: int | None = None, val_is_subset: bool = False) -> str:
    parts = [f"step {step}/{total}", f"train {loss(train_loss)}"]
    if val_loss is not None:
        scope = f" ({val_tokens:,}-token subset)" if val_is_subset and val_tokens else ""
        parts.append(f"val {loss(val_loss)}{scope}")
    elif lr is not None:
        parts.append(f"lr {lr:.1e}")
    parts += [rate(tokens_per_s), timing(elapsed, step, start_step, total)]
    return " | ".join(parts)


def whole_file_line(val_loss: float, perplexity: float | None, bits_per_byte: float | None, tokens: int) -> str:
    parts = [f"loss {loss(val_loss)} nats/token"]
    if perplexity is not None and math.isfinite(perplexity):
        parts.append(f"perplexity {perplexity:.1f}")
    if bits_per_byte is not None:
        parts.append(f"{bits_per_byte:.3f} bits/byte")
    return f"validation, whole file ({tokens:,} tokens): " + " | ".join(parts)
