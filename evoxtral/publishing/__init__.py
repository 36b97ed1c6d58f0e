"""What a finished run leaves for others: its model card, its recipe, the upload to the Hub and the summary it
prints, written once for SFT, RAFT and FER."""
