"""Scripts written by an LLM behind any OpenAI-compatible chat endpoint (huggingface_hub's InferenceClient).

The planner still decides each clip's slice, domain and exact tags; the LLM only writes words around them. Every
answer goes through ``validate_script`` (unknown tags, broken brackets, wrong tags or counts); an invalid one is
sent back with the problems for another try, and after ``max_attempts`` the planner writes that clip from
templates instead, so balance never depends on the LLM behaving.

Note: huggingface_hub refuses every request while HF_HUB_OFFLINE=1, so LLM scripts need it unset. The plan is
written once and reused, so the LLM is asked only on the first run.
"""

from __future__ import annotations

import os
import random

from evoxtral.data.generation.composers import ComposeRequest
from evoxtral.data.generation.scripts import validate_script
from evoxtral.data.generation.slices import is_scoped

SYSTEM_PROMPT = (
    "You write short spoken scripts for the ElevenLabs v3 text-to-speech model. Audio tags are written in square "
    "brackets inline, e.g. [sighs], and affect the speech that follows or mark a sound at that point. Use "
    "CAPITALS for one or two stressed words and ellipses (...) for hesitations. Answer with the script only."
)


def build_messages(request: ComposeRequest) -> list[dict]:
    tag_list = ", ".join(f"[{name}]" for name in request.tags) or "none"
    rules = [
        f"Write a {request.domain} script of two to five sentences.",
        f"Use exactly these audio tags, each exactly as many times as listed: {tag_list}. No other bracketed text.",
    ]
    if any(is_scoped(name) for name in request.tags):
        rules.append("Emotion and delivery tags must come before the words they colour, never at the very end.")
    if request.edge:
        rules.append("Put one tag at the very start, and two tags directly next to each other somewhere.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": " ".join(rules)}]


def _clean(answer: str) -> str:
    text = answer.strip().strip("`").strip()
    if text.lower().startswith("text\n"):
        text = text[5:]
    return " ".join(text.strip().strip('"').split())


class LLMComposer:
    """A composer (see ``evoxtral.data.generation.composers.Composer``) that asks an OpenAI-compatible endpoint."""

    def __init__(
        self,
        base_url: str | None,
        model: str | None = None,
        token_env: str = "HF_TOKEN",
        max_attempts: int = 3,
        temperature: float = 0.9,
        max_tokens: int = 400,
    ):
        from huggingface_hub import InferenceClient

        if not base_url:
            raise ValueError("script_source: llm needs llm_base_url (an OpenAI-compatible endpoint)")
        self.client = InferenceClient(base_url=base_url, api_key=os.environ.get(token_env))
        self.model = model
        self.max_attempts = max_attempts
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.rejected_answers: list[str] = []  # why each rejected answer was rejected

    def __call__(self, request: ComposeRequest, rng: random.Random) -> str:
        messages = build_messages(request)
        text = ""
        for _ in range(self.max_attempts):
            try:
                response = self.client.chat_completion(
                    messages,
                    model=self.model,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    seed=rng.randrange(2**31),
                )
                text = _clean(response.choices[0].message.content or "")
            except Exception as error:  # any endpoint failure costs one attempt, never the run
                self.rejected_answers.append(f"request failed: {type(error).__name__}")
                continue
            problems = validate_script(text, expected_tags=request.tags, slice_name=request.slice)
            if not problems:
                return text
            self.rejected_answers.append("; ".join(problems))
            messages = messages + [
                {"role": "assistant", "content": text},
                {"role": "user", "content": "That script is invalid: " + "; ".join(problems) + ". Write it again."},
            ]
        return text
