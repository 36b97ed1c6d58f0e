"""What every stage shares and none owns: per-process logging, resumable JSONL files, the checkpoint a Trainer run
resumes from, number formatting, and the stage runner behind `make demo` and the learning check."""
