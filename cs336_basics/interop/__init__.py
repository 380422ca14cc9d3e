"""Hugging Face interop: the transformers class an exported model becomes, and the remote code shipped with it.

- :mod:`.hf_classes`: :func:`~.hf_classes.choose_class` (a built-in class that
  computes the model exactly, else ours), ``config.json`` and the weights in
  the chosen class's names and layouts;
- ``modeling_cs336.py``: our ``CS336ForCausalLM``, a data file that the export
  copies into the folder (it imports torch and transformers only, never this package).
"""
