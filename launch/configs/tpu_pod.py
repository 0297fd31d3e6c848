r"""RZ-NAS on a TPU pod slice (or any multi-host cluster): the nb201 run, multi-process.

Every host runs the same command; ``jax.distributed`` finds the coordinator itself on Cloud TPU
(and from SLURM or JAX_COORDINATOR_ADDRESS elsewhere). Process 0 talks to the LLM and writes the
run folder; every process scores its share of each batch of children on its own chips, so give
the search a batch to share: K = proposals_per_step children per step (64 here, across the pod).

    gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --worker=all --command="\
      cd rznas-jax && GEMINI_API_KEY=$GEMINI_API_KEY python -m launch.search \
      --config=launch/configs/tpu_pod.py:zico --workdir=/mnt/shared/runs/nb201_zico"

The run folder must be one path that every host sees (an NFS or Filestore mount, or a
Cloud Storage bucket mounted with gcsfuse): process 0 writes it, and on a restart reads its
checkpoint. To resume after a preemption or crash, run the same command again on every host:
process 0 continues from the last checkpoint (an attempt after it is redone; scores already
computed are read back from scores.jsonl), and the others rejoin as scorers. The API key is read from the environment on process 0
only and is never written to the folder.
"""

from launch.configs import nb201


def get_config(proxy: str | None = None):
  config = nb201.get_config(proxy)  # the paper's NB201 run, spread over the pod
  config.search.proposals_per_step = 64
  config.llm.max_concurrency = 64
  config.distributed.enabled = True
  return config
