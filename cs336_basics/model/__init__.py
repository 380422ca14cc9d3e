"""The Transformer language model, its layers and its variants (filled in by the model issue)."""
