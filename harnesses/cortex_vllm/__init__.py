"""The vLLM harness: one in-process ``AsyncLLM`` per model, its engine core in a child process."""
