r"""LLMClient concurrency: wall time of N concurrent calls vs the ideal N x delay / limit.

A local OpenAI-compatible server (tests/llm_servers.py) answers every call after ``--delay_s``;
``LLMClient.complete_many`` sends ``--num_calls`` requests through the real ``openai`` SDK with
each concurrency limit in turn. For each limit it records the wall time, the ideal
``ceil(num_calls / limit) x delay_s``, their ratio, and the most requests the server ever had in
flight at once, which must never exceed the limit.

    python benchmarks/llm_concurrency.py                      # 32 calls, 200 ms, limits 1 4 8 16
    python benchmarks/llm_concurrency.py --limits=2 --num_calls=8 --out=/tmp/smoke.json
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time

from absl import app
from absl import flags

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tests"))

import llm_servers  # pylint: disable=g-import-not-at-top,wrong-import-position
from rznas_jax.llm import LLMClient, Message, OpenAIBackend, Request  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_integer("num_calls", 32, "Concurrent calls per measurement.", lower_bound=1)
flags.DEFINE_float("delay_s", 0.2, "Seconds the server takes to answer each call.", lower_bound=0)
flags.DEFINE_list("limits", ["1", "4", "8", "16"], "Concurrency limits (max_concurrency) to measure.")
flags.DEFINE_string("out", os.path.join(_HERE, "results", "llm_concurrency.json"), "JSON result file.")
FLAGS = flags.FLAGS


def measure(server: llm_servers.OpenAIServer, limit: int, num_calls: int, delay_s: float) -> dict:
  """One measurement: `num_calls` calls through a client capped at `limit`."""
  backend = OpenAIBackend("bench-model", api_key="not-needed", base_url=server.base_url,
                          timeout_s=max(10.0, 4 * delay_s))
  client = LLMClient(backend, max_concurrency=limit, max_retries=0)
  client.complete(Request(system="s", messages=(Message("user", "warm-up"),)))  # Connect, import.
  server.reset_counters()
  requests = [Request(system="You mutate cells.", messages=(Message("user", f"call {i}"),))
              for i in range(num_calls)]
  start = time.perf_counter()
  replies = client.complete_many(requests)
  wall_s = time.perf_counter() - start
  failures = [str(r) for r in replies if not hasattr(r, "text")]
  wrong = sum(getattr(r, "text", None) != f"echo: call {i}" for i, r in enumerate(replies))
  ideal_s = math.ceil(num_calls / limit) * delay_s
  return {"limit": limit, "num_calls": num_calls, "delay_s": delay_s, "wall_s": round(wall_s, 4),
          "ideal_s": round(ideal_s, 4), "ratio_to_ideal": round(wall_s / ideal_s, 3) if ideal_s else None,
          "server_max_in_flight": server.max_in_flight, "limit_exceeded": server.max_in_flight > limit,
          "wrong_replies": wrong, "failures": failures[:3]}


def main(argv):
  del argv
  limits = [int(v) for v in FLAGS.limits]
  rows = []
  with llm_servers.OpenAIServer(delay_s=FLAGS.delay_s) as server:
    for limit in limits:
      rows.append(measure(server, limit, FLAGS.num_calls, FLAGS.delay_s))
  print(f"{FLAGS.num_calls} concurrent calls, server answers after {FLAGS.delay_s * 1000:.0f} ms")
  print(f"{'limit':>5} {'wall s':>8} {'ideal s':>8} {'ratio':>6} {'max in flight':>14}")
  for row in rows:
    print(f"{row['limit']:>5} {row['wall_s']:>8.3f} {row['ideal_s']:>8.3f} "
          f"{row['ratio_to_ideal']:>6.3f} {row['server_max_in_flight']:>14}")
  result = {"benchmark": "llm_concurrency", "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "rows": rows}
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  with open(FLAGS.out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(f"wrote {FLAGS.out}")
  if any(row["limit_exceeded"] or row["wrong_replies"] for row in rows):
    raise SystemExit("the concurrency limit was exceeded or replies came back wrong")


if __name__ == "__main__":
  app.run(main)
