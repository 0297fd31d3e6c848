"""A search over 2 local processes with 4 simulated CPU devices each equals the single-process,
single-device search, and scores on all 8 devices."""

import json
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_KEYS = ("wall_seconds", "llm")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _command(workdir, *extra):
  return [sys.executable, "-m", "launch.search", "--config=launch/configs/tiny_cpu.py",
          f"--workdir={workdir}", "--progress=false", "--report=false", "--config.search.iterations=12",
          "--config.search.proposals_per_step=3", *extra]


def _folder(workdir):
  summary = json.loads((workdir / "summary.json").read_text())
  trials = (workdir / "trials.jsonl").read_text()
  state = json.loads((workdir / "checkpoint.json").read_text())["state"]
  scores = sorted((workdir / "scores.jsonl").read_text().splitlines())
  return {k: v for k, v in summary.items() if k not in TIMING_KEYS}, trials, state, scores


def test_two_processes_of_four_devices_write_the_single_process_run_folder(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  subprocess.run(_command(tmp_path / "single"), cwd=ROOT, env=env, check=True, capture_output=True,
                 timeout=600)
  placement = tmp_path / "placement"
  placement.mkdir()
  pod = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "RZNAS_PLACEMENT_LOG": str(placement)}
  port = _free_port()
  procs = [subprocess.Popen(
      _command(tmp_path / "multi", "--config.distributed.enabled=true",
               f"--config.distributed.coordinator_address=127.0.0.1:{port}",
               "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"),
      cwd=ROOT, env=pod, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "best" in outs[0][0] and "best" not in outs[1][0]  # only process 0 reports
  single, multi = _folder(tmp_path / "single"), _folder(tmp_path / "multi")
  assert multi == single
  # Every cell was scored once, by the process it was dealt to, and the 8 devices all took part.
  scored = [json.loads(line) for f in sorted(placement.iterdir()) for line in f.read_text().splitlines()]
  by_process = {p: {r["device"] for r in scored if r["process"] == p} for p in (0, 1)}
  assert len(by_process[0]) == len(by_process[1]) == 4, by_process
  assert len(by_process[0] | by_process[1]) == 8
  assert len(scored) == len({r["genotype"] for r in scored}) == len(multi[3])
