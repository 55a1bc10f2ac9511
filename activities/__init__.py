"""Side effects, one module per channel. Each activity does one send and nothing else."""
