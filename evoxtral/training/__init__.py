"""Training: SFT with TRL's SFTTrainer (sft.py, its fast paths and callbacks), RAFT (raft/), and what every run
does at its start and end (lifecycle.py)."""
