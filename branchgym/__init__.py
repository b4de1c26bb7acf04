"""branchgym: train tool-using LLM agents with entropy-balanced branching RL."""

__version__ = "0.1.0"
