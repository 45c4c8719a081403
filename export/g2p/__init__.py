"""Grapheme-to-phoneme (G2P) encoder–decoder on the CMU Pronouncing Dictionary."""
