"""Parallel proposals: wall time per 100 attempts for K = 1 and K = 8 against a slow LLM server.

A local OpenAI-compatible server (``tests/llm_servers.py``) answers every call after a fixed delay
with what the offline agent would answer, so the LLM calls cost what a remote model's latency
costs while the search does its real work (prompts, parsing, scoring with the compiled proxy,
checkpoints). With K proposals per step, K mutation calls run concurrently, the K children are
scored in one call, and K reflections run concurrently: a step costs about two call latencies
whatever K is. The script also reports quality per evaluation (best score and evaluations), since
K > 1 must not buy speed with worse search.

    python benchmarks/search_parallel.py                     # ~2 min on 2 cores
"""

import json
import os
import sys
import time

from absl import app, flags

from rznas_jax import results
from rznas_jax import search
from rznas_jax import spaces
from rznas_jax.llm.base import Message, Request
from rznas_jax.search import prompts

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tests"))
import llm_servers  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_list("ks", ["1", "8"], "Proposals per step to compare (the first is the reference).")
flags.DEFINE_integer("iterations", 100, "Attempts per run.")
flags.DEFINE_float("delay_s", 0.3, "Server latency per call.")
flags.DEFINE_string("proxy", "synflow", "Proxy.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "search_parallel.json"), "Output JSON.")
FLAGS = flags.FLAGS


def tiny_config(k: int, base_url: str):
  config = search.default_config()
  config.proxy = FLAGS.proxy
  config.seed = FLAGS.seed
  config.dataset = "imagenet16-120"
  config.batch_size = 8
  config.nb201.channels = 4
  config.nb201.cells_per_stage = 1
  config.search.iterations = FLAGS.iterations
  config.search.population = 20
  config.search.proposals_per_step = k
  config.llm.backend = "openai"
  config.llm.base_url = base_url
  config.llm.model = "offline-agent-behind-http"
  config.llm.max_concurrency = 16
  return config


def agent_responder(agent):
  """Answers an OpenAI chat body as the offline agent answers the same request."""

  def respond(body):
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    purpose = prompts.REFLECTION if system == prompts.REFLECTION_SYSTEM else prompts.MUTATION
    request = Request(system=system, messages=(Message("user", llm_servers.last_user_text(body)),),
                      temperature=body.get("temperature", 1.0), seed=body.get("seed"),
                      purpose=purpose)
    return agent.complete(request).text

  return respond


def main(argv):
  del argv
  os.environ.setdefault("OPENAI_API_KEY", "not-needed")
  agent = search.OfflineAgent(spaces.get("nb201", dataset="imagenet16-120", channels=4, cells_per_stage=1))
  rows = []
  with llm_servers.OpenAIServer(responder=agent_responder(agent), delay_s=FLAGS.delay_s) as server:
    for k in map(int, FLAGS.ks):
      workdir = os.path.join("/tmp", f"search_parallel_k{k}_{os.getpid()}")
      config = tiny_config(k, server.base_url)
      server.reset_counters()
      stamps = []  # (attempts done, time) after each step; the first step includes the compile
      summary = search.run(config, workdir, progress=False,
                           on_step=lambda state: stamps.append((state.iteration, time.monotonic())))
      (n0, t0), (n1, t1) = stamps[0], stamps[-1]
      seconds = t1 - t0
      rows.append({"k": k, "seconds": seconds, "seconds_per_100": seconds * 100 / (n1 - n0),
                   "best_score": summary["best_score"], "evaluations": summary["evaluations"],
                   "llm_calls": summary["llm"]["calls"], "server_max_in_flight": server.max_in_flight})
  ref = rows[0]["seconds_per_100"]
  print("timed from the end of the first step (which includes the proxy's compile) to the end")
  print(f"{FLAGS.iterations} attempts, server latency {FLAGS.delay_s} s, proxy {FLAGS.proxy} (tiny network)")
  print("K   s/100 attempts   speed-up   best score   evaluations   LLM calls   max in flight")
  for r in rows:
    r["speedup"] = ref / r["seconds_per_100"]
    print(f"{r['k']:<3d} {r['seconds_per_100']:14.1f} {r['speedup']:10.2f} {r['best_score']:12.4g} "
          f"{r['evaluations']:13d} {r['llm_calls']:11d} {r['server_max_in_flight']:15d}")
  results.write_json(FLAGS.out, {"settings": {k: FLAGS[k].value for k in ("ks", "iterations", "delay_s",
                                                                           "proxy", "seed")},
                                 "rows": rows})


if __name__ == "__main__":
  app.run(main)
