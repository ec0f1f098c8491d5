"""Sequential-revision history of the multi-turn verifier environments.

At turn t the prompt is the system prompt v_0^in followed by every earlier model
output and verifier message, in order: concat(v_0^in, [v_k^out, v_k^ver] for k < t).
GeneralPoints keeps one history per episode; V-IRL rebuilds it (``reset``) with a new
system prompt after every correct move, so it only covers the tries at one point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Model outputs are stored whole: this cap only protects the prompt from a runaway
# generation (a 100k-character answer would otherwise be replayed every turn).
MAX_OUTPUT_CHARS = 4096


@dataclass
class RevisionHistory:
    """The system prompt and the (model output, verifier message) pairs so far."""

    system_prompt: str = ""
    turns: list[tuple[str, str]] = field(default_factory=list)
    separator: str = "\n"

    def reset(self, system_prompt: str) -> None:
        """Start over with a new system prompt and no turns."""
        self.system_prompt = system_prompt
        self.turns = []

    def add(self, model_output: str, verifier_message: str) -> None:
        """Record one try: what the model wrote and what the verifier answered."""
        text = str(model_output)
        if len(text) > MAX_OUTPUT_CHARS:
            text = text[:MAX_OUTPUT_CHARS] + " [...]"
        self.turns.append((text, str(verifier_message)))

    def __len__(self) -> int:
        return len(self.turns)

    def render(self) -> str:
        """The prompt for the next turn."""
        parts = [self.system_prompt]
        for output, message in self.turns:
            parts.append(output)
            parts.append(message)
        return self.separator.join(parts)
