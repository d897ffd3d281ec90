"""vaekit: the variational auto-encoder of the derivation, made into a toolkit for real data."""

__version__ = "0.1.0"
