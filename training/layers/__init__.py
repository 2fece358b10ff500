"""Sequence-mixing layers of the Zamba2 trainer: Mamba2, MHA/GQA and CCA/CCGQA attention."""
