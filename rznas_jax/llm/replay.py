"""Record every LLM exchange to a JSONL log, and answer from such a log without network or key.

One line per call:

  {"fingerprint": ..., "request": Request.to_json(), "response": Response.to_json(),
   "backend": ..., "started_at": ISO-8601 UTC, "latency_s": wall seconds with retries,
   "attempts": n}

A call that failed for good has "error" (its message) instead of "response"; replay skips it.
`ReplayBackend` answers a request with the recorded response of the same fingerprint; several
identical requests get their recorded responses first-in first-out, so a search that issues the
same prompt twice sees the two replies in the order it saw them first.

Example:
  >>> client = LLMClient(GeminiBackend(...), log_path="run/llm_log.jsonl")   # records
  >>> again = LLMClient(ReplayBackend("run/llm_log.jsonl"))                  # replays, offline
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from rznas_jax.llm.base import LLMError, Request, Response

REDACTED = "[REDACTED]"


def _redact(value: Any, secrets: Sequence[str]) -> Any:
  if isinstance(value, str):
    for secret in secrets:
      value = value.replace(secret, REDACTED)
    return value
  if isinstance(value, dict):
    return {k: _redact(v, secrets) for k, v in value.items()}
  if isinstance(value, list):
    return [_redact(v, secrets) for v in value]
  return value


def utc_now_iso() -> str:
  """The current time as an ISO-8601 UTC string (the log's `started_at`)."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def log_entry(request: Request, *, backend: str, started_at: str, latency_s: float, attempts: int,
              response: Response | None = None, error: str | None = None) -> dict[str, Any]:
  """One line of the run log (exactly one of `response` and `error` is given)."""
  entry: dict[str, Any] = {"fingerprint": request.fingerprint(), "request": request.to_json()}
  if response is not None:
    entry["response"] = response.to_json()
  else:
    entry["error"] = error or "unknown error"
  entry.update(backend=backend, started_at=started_at, latency_s=round(latency_s, 6),
               attempts=attempts)
  return entry


class LLMLog:
  """Appends JSON lines to a file, safely from many threads.

  Each line is written and flushed whole under a lock, so a crash loses at most the line being
  written and a reader never sees two lines interleaved. Any of `secrets` (API keys) that appears
  anywhere in an entry (an error message echoing a header, say) is replaced by '[REDACTED]'.
  """

  def __init__(self, path: str | os.PathLike, secrets: Iterable[str] = ()):
    """Creates the log's folder; the file is created on the first `append`.

    Args:
      path: the JSONL file; existing lines are kept (a resumed run appends).
      secrets: strings that must never be written (empty strings are ignored).
    """
    self.path = os.fspath(path)
    self._secrets = tuple(s for s in secrets if s)
    self._lock = threading.Lock()
    folder = os.path.dirname(os.path.abspath(self.path))
    os.makedirs(folder, exist_ok=True)

  def append(self, entry: dict[str, Any]) -> None:
    line = json.dumps(_redact(entry, self._secrets), ensure_ascii=False, sort_keys=False)
    with self._lock:
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()


def _describe_difference(request: Request, recorded: Iterable[Request]) -> str:
  """Names the fields in which `request` differs from the most similar recorded request."""
  mine = request.to_json()
  best: list[str] | None = None
  for other in recorded:
    theirs = other.to_json()
    differing = [k for k in mine if mine[k] != theirs.get(k)]
    if best is None or len(differing) < len(best):
      best = differing
  if not best:
    return ""
  return f" (the closest recorded request differs in: {', '.join(best)})"


class ReplayBackend:
  """Answers from a recorded LLM log, by request fingerprint, first-in first-out.

  Thread-safe. Responses come back exactly as recorded, except `backend`, which is 'replay'.

  Attributes:
    name: 'replay'.
    path: the log it reads.
  """
  name = "replay"
  key_env_vars: tuple[str, ...] = ()

  def __init__(self, path: str | os.PathLike):
    """Reads the whole log.

    Args:
      path: a JSONL log written by `LLMClient` (`llm_log.jsonl` in a run folder).

    Raises:
      LLMError: the file is missing or a line is not a log entry (one sentence naming the line).
    """
    self.path = os.fspath(path)
    self.model = "replay"
    if not os.path.isfile(self.path):
      raise LLMError(f"The replay log {self.path} does not exist; give the llm_log.jsonl of a "
                     "finished run.")
    self._queues: dict[str, collections.deque[Response]] = collections.defaultdict(collections.deque)
    self._requests: dict[str, Request] = {}
    self._served: dict[str, int] = collections.Counter()
    self._lock = threading.Lock()
    with open(self.path, encoding="utf-8") as f:
      for number, line in enumerate(f, start=1):
        if line.strip():
          self._load_line(number, line)

  def _load_line(self, number: int, line: str) -> None:
    where = f"Line {number} of the replay log {self.path}"
    try:
      entry = json.loads(line)
    except json.JSONDecodeError as e:
      raise LLMError(f"{where} is not JSON ({e.msg}); each line must be one JSON object as "
                     "written by LLMClient.") from None
    if not isinstance(entry, dict) or "fingerprint" not in entry or "request" not in entry:
      raise LLMError(f"{where} is not an LLM log entry; expected an object with 'fingerprint', "
                     "'request' and 'response' (or 'error').")
    if "response" not in entry:
      if "error" in entry:
        return  # A call that failed for good was never answered; nothing to replay.
      raise LLMError(f"{where} has neither 'response' nor 'error'.")
    try:
      request = Request.from_json(entry["request"])
      response = Response.from_json(entry["response"])
    except (KeyError, TypeError, ValueError) as e:
      raise LLMError(f"{where} has an unreadable request or response ({type(e).__name__}: {e}); "
                     "it was not written by this version of LLMClient.") from None
    fingerprint = request.fingerprint()
    if fingerprint != entry["fingerprint"]:
      raise LLMError(f"{where} records fingerprint {str(entry['fingerprint'])[:12]} but its request "
                     f"hashes to {fingerprint[:12]}; the log was edited or is from another version.")
    self._queues[fingerprint].append(response)
    self._requests.setdefault(fingerprint, request)

  def __repr__(self) -> str:
    return f"ReplayBackend({self.path!r})"

  def __len__(self) -> int:
    """How many recorded replies are still unused."""
    with self._lock:
      return sum(len(q) for q in self._queues.values())

  def complete(self, request: Request) -> Response:
    """The next recorded reply to this exact request.

    Raises:
      LLMError: no reply was recorded for this fingerprint, or all of them have been used.
    """
    fingerprint = request.fingerprint()
    with self._lock:
      queue = self._queues.get(fingerprint)
      if queue:
        self._served[fingerprint] += 1
        response = queue.popleft()
        return Response(**{**response.to_json(), "backend": self.name})
      served = self._served.get(fingerprint, 0)
      recorded = list(self._requests.values())
    purpose = f" ({request.purpose})" if request.purpose else ""
    if served:
      raise LLMError(f"Request {fingerprint[:12]}{purpose} was recorded {served} time(s) in "
                     f"{self.path} and all its replies have been used; the replayed run asks it "
                     "more often than the recorded one did.")
    raise LLMError(f"No recorded reply for request {fingerprint[:12]}{purpose} in {self.path}: the "
                   "request is not the recorded one (a changed prompt, seed, temperature or "
                   f"config?){_describe_difference(request, recorded)}.")
