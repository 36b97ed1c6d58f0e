"""Training: SFT with TRL's SFTTrainer (sft.py, its fast paths and callbacks), RAFT (raft/), and what both do at
the end of a run (lifecycle.py)."""
