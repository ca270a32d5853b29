"""The OpenAI Responses API (``/v1/responses``) served in front of the neurons' OpenAI chat."""
