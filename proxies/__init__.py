"""Zero-cost proxies: one pure function each, registered by name (see `base.py` for the contract)."""

from rznas_jax.proxies.base import (ANALYTIC, NETWORK, Batch, ModelOutput, ProxySpaceError, ProxySpec,
                                    UnknownProxyError, analytic_names, check_for_space, get, names,
                                    network_names, register, register_analytic)
# Importing a proxy module registers its proxies.
from rznas_jax.proxies.analytic import flops, params
from rznas_jax.proxies.az_nas import (az_expressivity, az_expressivity_real, az_nas_components,
                                     az_progressivity, az_progressivity_real, az_trainability,
                                     az_trainability_real)
from rznas_jax.proxies.epe_nas import epe_nas
from rznas_jax.proxies.fisher import fisher, fisher_unweighted
from rznas_jax.proxies.grad_norm import grad_norm, grad_norm_zen
from rznas_jax.proxies.grasp import grasp
from rznas_jax.proxies.jacov import jacov
from rznas_jax.proxies.l2_norm import l2_norm, plain
from rznas_jax.proxies.naswot import naswot
from rznas_jax.proxies.snip import snip
from rznas_jax.proxies.synflow import synflow, synflow_zen
from rznas_jax.proxies.te_nas import te_nas
from rznas_jax.proxies.zen import zen
from rznas_jax.proxies.zico import zico, zico_score
from rznas_jax.proxies.maedet import maedet, maedet_score
