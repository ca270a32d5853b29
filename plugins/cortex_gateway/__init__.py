"""The gateway: one OpenAI endpoint over every neuron, with a merged catalogue and cold loads."""
