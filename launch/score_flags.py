"""The flags of ``launch.score`` and ``launch.correlate``: each overrides one key of the job's
config (`rznas_jax.score_job.default_config`), so old command lines keep working."""

from __future__ import annotations

from launch import cli
from rznas_jax import spaces

# (flag, config key, absl type, help)
SHARED = (
    ("space", "space", "string", f"Search space; valid: {', '.join(spaces.names())}."),
    ("proxies", "proxies", "list", "Comma-separated proxies or aggregates of them (az_nas, "
     "rank:a+b, rank_linear:a+b), e.g. synflow,naswot,az_nas."),
    ("data", "data", "string", "'gaussian' (N(0,1) images, random labels), a CIFAR python-pickle "
     "directory or an .npz file with 'images' (N, H, W, 3) uint8 and 'labels' (N,)."),
    ("dataset", "dataset", "string", "nb201: the network's dataset (cifar10, cifar100, "
     "imagenet16-120), also the normalisation of real images; macro spaces: only the "
     "normalisation (default CIFAR for zen_cifar, else ImageNet)."),
    ("seed", "seed", "integer", "Seeds the sampled architectures, the init, the batch and the proxies."),
    ("batch_size", "batch_size", "integer", "Images per proxy batch (default 64)."),
    ("all_devices", "all_devices", "bool", "Spread the work over every device: NB201 cells "
     "sharded over a mesh; macro architectures placed round-robin."),
    ("workers", "workers", "integer", "Score on this many worker processes, each pinned to its "
     "share of the CPU cores (0: in this process). Faster for many architectures on a CPU "
     "(docs/scoring.md); the scores may differ from one process's by float32 rounding."),
    ("compilation_cache_dir", "compilation_cache", "string",
     "Enables JAX's persistent compilation cache in this folder."),
    ("out", "out", "string", "Output folder (created if missing)."),
    ("strategy", "nb201.strategy", "string", "nb201: auto, switch, masked_vmap or masked."),
    ("chunk_size", "nb201.chunk_size", "integer", "nb201: cells per vmapped call (masked_vmap), "
     "per device with --all_devices (default 8, or 1 per device)."),
    ("channels", "nb201.channels", "integer", "nb201: channels of the first stage (16)."),
    ("cells_per_stage", "nb201.cells_per_stage", "integer", "nb201: cells per stage (5)."),
    ("resolution", "macro.resolution", "integer", "Macro spaces: input size, overriding the "
     "space's (32, 224, 480); budgets are checked at this size."),
    ("num_classes", "macro.num_classes", "integer", "Macro spaces: classifier width."),
    ("budget_flops", "macro.budget_flops", "float", "Macro spaces: FLOPs (multiply-accumulate) "
     "budget, e.g. 450e6."),
    ("budget_params", "macro.budget_params", "float", "Macro spaces: parameter budget, e.g. 1e6."),
    ("max_layers", "macro.max_layers", "integer", "Macro spaces: layer limit."),
    ("scan", "macro.scan", "bool", "Macro spaces: run a block's repeated sub-layers as one "
     "nn.scan (shorter compiles for deep blocks; slower on a CPU)."),
)


def section_of_space(config) -> str:
  return spaces.get(config.space).CONFIG_SECTION


def config_from_flags(config, table):
  """``config`` with the given flags of ``table`` applied (UserError for a misplaced one)."""
  return cli.apply_overrides(config, table, section_of_space)
