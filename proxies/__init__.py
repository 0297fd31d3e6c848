"""Zero-cost proxies: one pure function each, registered by name (see `base.py` for the contract)."""

from rznas_jax.proxies.base import Batch, ModelOutput, ProxySpec, UnknownProxyError, get, names, register
