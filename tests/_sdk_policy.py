"""The policy the SDK and streaming tests share."""

from __future__ import annotations

import aiguard


def openai_and_anthropic_policy() -> aiguard.Policy:
    """Both providers approved for inference: the SDK and streaming tests' policy."""
    return aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(
                base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
            ),
            "anthropic": aiguard.DestinationPolicy(
                base_url="https://api.anthropic.com", approved=True, purposes=["inference"]
            ),
        }
    )
