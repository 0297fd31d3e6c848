"""rznas_jax: LLM-guided zero-cost neural architecture search (RZ-NAS) in JAX/Flax."""

__version__ = "0.1.0"
