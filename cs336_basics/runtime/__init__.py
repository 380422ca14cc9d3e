"""What the process runs on and how it uses it: devices, the autocast dtype, the CPU allocator.

- :mod:`.devices`: CPU model and vector features, torch's build, the devices it sees, ``resolve_device``;
- :mod:`.precision`: which autocast dtype ``auto`` means on this machine (bf16 where it is faster), cached;
- :mod:`.allocator`: glibc's allocator told to keep freed memory for long CPU loops.

The package imports none of them, so importing it costs nothing; ``devices`` and
``precision`` import torch, ``allocator`` only ``ctypes``.
"""
