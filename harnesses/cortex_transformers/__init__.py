"""The transformers harness: Hugging Face transformers + torch on CPU or CUDA."""
