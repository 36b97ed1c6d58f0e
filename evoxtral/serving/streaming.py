"""Server-sent events for ``stream=true`` in OpenAI's shapes: ``transcript.text.delta`` events as the text grows
(token by token when the transcriber streams, else a segment at a time), one ``transcript.text.segment`` per finished
segment when speakers were asked for (as OpenAI's diarizing model streams), then one ``transcript.text.done`` with
the whole text. A failure once the stream has started ends it with an ``error`` event in the API's error shape,
which the openai client raises as an APIError, instead of a broken connection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from evoxtral.serving.batching import MicroBatcher
from evoxtral.serving.pipeline import TranscriptionPlan, timed_texts
from evoxtral.serving.results import full_text
from evoxtral.serving.transcriber import DecodingOptions
from evoxtral.utils.logging import get_logger

logger = get_logger("evoxtral.serving")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # proxies must not buffer the events


def server_sent_event(data: dict, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def transcription_events(
    batcher: MicroBatcher, plan: TranscriptionPlan, options: DecodingOptions
) -> AsyncIterator[str]:
    diarized = plan.diarization_method is not None
    streamed: dict[int, str] = {}  # what each segment has sent so far
    transcripts = []
    anything_sent = False

    def delta(index: int, text: str) -> str:
        nonlocal anything_sent
        separator = " " if anything_sent and index not in streamed else ""
        streamed[index] = streamed.get(index, "") + text
        anything_sent = True
        event = {"type": "transcript.text.delta", "delta": separator + text}
        if diarized:
            event["segment_id"] = f"seg_{index}"
        return server_sent_event(event)

    try:
        async for piece in batcher.stream(plan.clips, options):
            if piece.done is None:
                yield delta(piece.index, piece.text)
                continue
            transcripts.append(piece.done)
            final, sent = piece.done.text.strip(), streamed.get(piece.index, "")
            if final.startswith(sent) and len(final) > len(sent):
                yield delta(piece.index, final[len(sent) :])
            elif final != sent:  # the decoder revised text it had streamed: the done event has the final text
                logger.warning("segment %d streamed %r but finished as %r", piece.index, sent, final)
            if diarized:
                segment = timed_texts(plan, transcripts)[piece.index]
                yield server_sent_event(
                    {
                        "type": "transcript.text.segment",
                        "id": f"seg_{piece.index}",
                        "speaker": segment.speaker,
                        "start": round(segment.start, 3),
                        "end": round(segment.end, 3),
                        "text": final,
                    }
                )
        yield server_sent_event({"type": "transcript.text.done", "text": full_text(timed_texts(plan, transcripts))})
    except Exception:
        logger.exception("a streamed transcription failed after %d of %d segments", len(transcripts), len(plan.clips))
        error = {
            "message": "The server failed while transcribing; the error has been logged.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
        yield server_sent_event({"type": "error", "error": error}, event="error")
