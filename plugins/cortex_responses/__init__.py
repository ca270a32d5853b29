"""The OpenAI Responses API (``/v1/responses``) served in front of the neurons' OpenAI chat.

The neuron side — the chat wire types, measuring and clamping the output budget, reading a
neuron's stream and errors — is the Anthropic dialect's (:mod:`cortex_anthropic.chat_protocol`,
:mod:`cortex_anthropic.exchange`, :mod:`cortex_anthropic.streaming`), used rather than copied so
both dialects treat neurons alike.
"""
