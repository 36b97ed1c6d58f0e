"""Watching `generate` token by token, for a whole batch: each row's token ids, their log-probabilities, and its text
as it grows.

transformers' TextIteratorStreamer handles one row only; the server decodes a micro-batch of segments from several
requests in one call, so this observer keeps one stream per row. It is both the `streamer` and a `logits_processor`
of one `generate` call: as a logits processor it keeps each step's log-softmax (the distribution the token is drawn
from, at the sampling temperature), as a streamer it receives the tokens chosen from it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import torch
from transformers import LogitsProcessor
from transformers.generation.streamers import BaseStreamer

TextCallback = Callable[[int, str], None]  # (row, new text) from the generating thread


class BatchGenerationObserver(BaseStreamer, LogitsProcessor):
    def __init__(
        self,
        tokenizer,
        eos_token_ids: int | Iterable[int],
        temperature: float = 1.0,
        on_text: TextCallback | None = None,
    ):
        self.tokenizer = tokenizer
        self.eos_token_ids = {eos_token_ids} if isinstance(eos_token_ids, int) else set(eos_token_ids)
        self.temperature = temperature if temperature > 0 else 1.0
        self.on_text = on_text
        self.token_ids: list[list[int]] = []
        self.logprobs: list[list[float]] = []
        self._finished: list[bool] = []
        self._sent: list[str] = []
        self._distributions: deque[torch.Tensor] = deque()
        self._prompt_seen = False

    # --- logits processor: runs before each token is chosen
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._distributions.append(torch.log_softmax(scores.float() / self.temperature, dim=-1).cpu())
        return scores

    # --- streamer: the prompt first, then the tokens chosen at each step
    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            rows = value.shape[0] if value.dim() > 1 else 1
            self.token_ids = [[] for _ in range(rows)]
            self.logprobs = [[] for _ in range(rows)]
            self._finished = [False] * rows
            self._sent = [""] * rows
            return
        distribution = self._distributions.popleft() if self._distributions else None
        for row, token in enumerate(value.view(-1).tolist()):
            if self._finished[row]:
                continue
            if distribution is not None:
                self.logprobs[row].append(float(distribution[row, token]))
            if token in self.eos_token_ids:
                self._finished[row] = True
                continue
            self.token_ids[row].append(token)
            if self.on_text is not None:
                self._emit(row, final=False)

    def end(self) -> None:
        if self.on_text is not None:
            for row in range(len(self.token_ids)):
                self._emit(row, final=True)

    def average_logprob(self, row: int) -> float | None:
        """Mean log-probability of the row's tokens, end-of-sequence included (None if nothing was scored)."""
        scored = self.logprobs[row] if row < len(self.logprobs) else []
        return sum(scored) / len(scored) if scored else None

    def _emit(self, row: int, final: bool) -> None:
        """Send the text the row has grown by. Mid-stream, trailing whitespace and an unfinished multi-byte
        character are held back, so the pieces join up to exactly the stripped final transcript."""
        text = self.tokenizer.decode(self.token_ids[row], skip_special_tokens=True).strip()
        if not final and text.endswith("\ufffd"):
            return
        sent = self._sent[row]
        if len(text) > len(sent) and text.startswith(sent):
            self._sent[row] = text
            self.on_text(row, text[len(sent) :])
