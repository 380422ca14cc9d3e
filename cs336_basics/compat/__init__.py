"""The CS336 course's adapter functions, as thin glue over the library.

Course test suites call an implementation through ``tests/adapters.py``. Point
that file at one of these modules and the suite runs against this library::

    # tests/adapters.py of the spring-2025 assignment
    from cs336_basics.compat.spring2025 import *  # noqa: F401,F403

- :mod:`.spring2024`: GPT-2 style (learned positions, GELU FFN, dropout;
  attention masks with True = masked out; per-head q/k/v weights).
- :mod:`.spring2025`: Llama style (RoPE, SwiGLU, no dropout; masks with
  True = may attend, the library's own convention).

The functions hold no logic of their own beyond mapping argument names, mask
conventions and weight names onto the library; :mod:`.common` has the ones
both versions share (data, loss, optimizer, schedule, checkpoints, tokenizer).
"""
