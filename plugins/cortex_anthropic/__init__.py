"""The Anthropic Messages dialect: ``/v1/messages`` in front of the neurons' OpenAI chat."""
