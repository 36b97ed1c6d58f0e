"""The model: loading Voxtral (hub, folder, adapter or built-in), the tiny offline builder, the processor, the
transcription collator, the audio-encoder cache, where LoRA goes, and decoding (greedy transcripts, k samples).
The merge of an adapter into its base lives here too."""
