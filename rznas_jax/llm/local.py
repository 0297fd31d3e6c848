"""A GGUF model run in this process by llama-cpp-python: no server, no network, no key.

``llm.backend=local:PATH.gguf`` answers every request with the model in ``PATH.gguf``, through the
optional extra ``pip install -e ".[local]"`` (llama-cpp-python, built from source; see the README
for the build flags this CPU needs). Mutation requests are constrained by the search space's GBNF
grammar (``structured_output=auto`` or ``grammar``), or by its JSON schema turned into a grammar
(``json_schema``), so a reply cannot name an operation the space does not have; reflection
replies are free text.

Settings are the ones measured to work on a small CPU: all cores for generation and prompt
evaluation, ``logits_all=False`` (with a 262k vocabulary the alternative reserves gigabytes), a
context sized to the longest prompt seen (the model is reloaded, from the page cache, when a
prompt outgrows it), and one context per request purpose (mutation, reflection), each keeping
its last prompt evaluated, so that a mutation prompt re-evaluates only what follows the system
turn it shares with the previous one (the weights are mapped once and shared). Measured on 2
cores with Gemma 3 270M and the NB201 prompt: about 2 s per mutation call after a reflection
this way, 9 s when mutation and reflection share one context; llama-cpp-python's RAM prompt cache
was no better (6-15 s, measured with another job running). The chat format comes from the
file's ``tokenizer.chat_template``; a model without one (a base model) gets a plain
``User:``/``Assistant:`` transcript, which base models continue sensibly.

Calls are serialised (one model, one context): `LLMClient`'s concurrency cap still applies, but
only one generation runs at a time.

Example:
  >>> backend = LocalBackend("gemma-3-270m-q4_k_m.gguf")
  >>> backend.complete(Request(system="...", messages=(Message("user", "..."),))).text
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

from rznas_jax.llm.base import LLMError, Request, Response
from rznas_jax.llm.structured import FormChooser

GGUF_MAGIC = b"GGUF"
_CONTEXT_STEP = 1024
_PLAIN_STOP = ("\nUser:", "\n\nUser")
_EXTRA_HINT = ('install the optional extra with pip install -e ".[local]" (the README gives the '
               "build flags for CPUs with AMX)")


def _import_llama_cpp() -> Any:
  try:
    import llama_cpp  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise LLMError(f"llm.backend=local: needs llama-cpp-python, which is not installed; "
                   f"{_EXTRA_HINT}.") from None
  return llama_cpp


def check_model_file(path: str) -> None:
  """Raises LLMError (one sentence) unless ``path`` is a readable GGUF file."""
  if not path:
    raise LLMError("llm.backend=local: needs a model file, e.g. local:/models/model.gguf.")
  if not os.path.isfile(path):
    raise LLMError(f"llm.backend=local:{path} names no file; give the path of a .gguf model.")
  try:
    with open(path, "rb") as f:
      magic = f.read(4)
  except OSError as e:
    raise LLMError(f"llm.backend=local:{path} cannot be read ({e.strerror}).") from None
  if magic != GGUF_MAGIC:
    raise LLMError(f"llm.backend=local:{path} is not a GGUF model (it does not start with the "
                   f"GGUF magic bytes, got {magic!r}); give a .gguf file.")


def plain_transcript(request: Request) -> str:
  """The prompt a model without a chat template continues: system text, then turns."""
  turns = [request.system.strip()] if request.system else []
  for message in request.messages:
    who = "User" if message.role == "user" else "Assistant"
    turns.append(f"{who}:\n{message.text.strip()}")
  return "\n\n".join(turns) + "\n\nAssistant:\n"


class LocalBackend:
  """Answers requests with a GGUF model in-process (llama-cpp-python).

  Attributes:
    name: 'local'.
    model: the model's name from its metadata (or the file name).
    path: the GGUF file.
    structured: the `FormChooser` ('auto' means the space's grammar).
    chat_template: whether the file has a chat template (else the plain transcript is used).
  """
  name = "local"
  key_env_vars: tuple[str, ...] = ()

  def __init__(self, path: str, *, structured_output: str = "auto", n_threads: int | None = None):
    """Checks the file and reads its vocabulary and metadata; the weights load on the first call.

    Args:
      path: the .gguf file.
      structured_output: 'auto' (grammar), 'grammar', 'json_schema' or 'off'.
      n_threads: CPU threads; None for every core this process may use.

    Raises:
      LLMError: llama-cpp-python is missing, or the file is missing, unreadable or not a model.
      ValueError: a structured_output mode this backend has no form for.
    """
    self.structured = FormChooser(structured_output, "local")
    self.path = os.fspath(path)
    check_model_file(self.path)
    self._llama_cpp = _import_llama_cpp()
    try:
      self._vocab = self._llama_cpp.Llama(self.path, vocab_only=True, verbose=False)
    except Exception as e:  # pylint: disable=broad-except  # llama.cpp raises ValueError or worse.
      raise LLMError(f"llm.backend=local:{self.path} could not be loaded by llama.cpp "
                     f"({type(e).__name__}: {e}); the file may be truncated or corrupt.") from None
    metadata = dict(getattr(self._vocab, "metadata", {}) or {})
    self.model = str(metadata.get("general.name") or os.path.basename(self.path))
    self.chat_template = bool(metadata.get("tokenizer.chat_template"))
    architecture = metadata.get("general.architecture", "")
    self.train_context = int(metadata.get(f"{architecture}.context_length", 0) or 0)
    self.n_threads = n_threads or len(os.sched_getaffinity(0))
    self._llms: dict[str, Any] = {}  # purpose -> a loaded model with its own context
    self._grammars: dict[str, Any] = {}
    self._lock = threading.Lock()

  def __repr__(self) -> str:
    return f"LocalBackend({self.path!r})"

  # -- the model -----------------------------------------------------------------------------------

  def _tokens(self, text: str) -> int:
    return len(self._vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True))

  def _context_for(self, request: Request) -> int:
    """Tokens the request needs: its prompt (template overhead included) and its reply."""
    text = (plain_transcript(request) if not self.chat_template
            else "\n".join([request.system, *(m.text for m in request.messages)]))
    overhead = 0 if not self.chat_template else 16 * (len(request.messages) + 1)
    return self._tokens(text) + overhead + request.max_output_tokens

  def _model(self, purpose: str, needed: int) -> Any:
    """The loaded model for requests of ``purpose``, with a context of at least ``needed`` tokens."""
    if self.train_context and needed > self.train_context:
      raise LLMError(f"The prompt and reply need {needed} tokens but {self.model} has a context of "
                     f"{self.train_context}; lower prompt.max_output_tokens or shorten the prompt "
                     "(prompt.code=False).")
    llm = self._llms.get(purpose)
    if llm is not None and llm.n_ctx() >= needed:
      return llm
    n_ctx = -(-int(needed * 1.25) // _CONTEXT_STEP) * _CONTEXT_STEP
    if self.train_context:
      n_ctx = min(n_ctx, self.train_context)
    self._llms.pop(purpose, None)  # Free the old context before the new one is made.
    try:
      llm = self._llama_cpp.Llama(self.path, n_ctx=n_ctx, n_threads=self.n_threads,
                                  n_threads_batch=self.n_threads, logits_all=False, verbose=False)
    except Exception as e:  # pylint: disable=broad-except
      raise LLMError(f"llm.backend=local:{self.path} could not be loaded with a context of "
                     f"{n_ctx} tokens ({type(e).__name__}: {e}).") from None
    self._llms[purpose] = llm
    return llm

  def _grammar(self, form: str, request: Request) -> Any:
    """The compiled grammar for this request's form, or None (plain)."""
    if form == "grammar" and request.grammar is not None:
      key, make = request.grammar, self._llama_cpp.LlamaGrammar.from_string
    elif form == "json_schema" and request.response_schema is not None:
      key, make = request.response_schema, self._llama_cpp.LlamaGrammar.from_json_schema
    else:
      return None
    if key not in self._grammars:
      try:
        self._grammars[key] = make(key, verbose=False)
      except Exception as e:  # pylint: disable=broad-except
        raise LLMError(f"llama.cpp refused the reply's {form.replace('_', ' ')} "
                       f"({type(e).__name__}: {e}).") from None
    return self._grammars[key]

  # -- Backend -------------------------------------------------------------------------------------

  def complete(self, request: Request) -> Response:
    """Generates one reply.

    Raises:
      LLMError: the model cannot be loaded, the prompt does not fit its context, or llama.cpp
        refused the grammar.
    """
    form = self.structured.form_for(request)
    with self._lock:
      llm = self._model(request.purpose, self._context_for(request))
      grammar = self._grammar(form, request)
      seed = request.seed if request.seed is not None else 0
      start = time.monotonic()
      try:
        text, out = self._generate(llm, request, grammar, seed)
      except Exception as e:  # pylint: disable=broad-except  # llama.cpp's errors are RuntimeErrors.
        raise LLMError(f"{self.model} failed to generate a reply in-process ({type(e).__name__}: "
                       f"{e}).") from None
      latency = time.monotonic() - start
    usage = out.get("usage") or {}
    return Response(text=text, model=self.model, input_tokens=int(usage.get("prompt_tokens", 0)),
                    output_tokens=int(usage.get("completion_tokens", 0)), latency_s=latency,
                    call_id=str(out.get("id") or uuid.uuid4().hex), backend=self.name,
                    structured=form)

  def _generate(self, llm: Any, request: Request, grammar: Any, seed: int) -> tuple[str, dict]:
    if self.chat_template:
      messages = ([{"role": "system", "content": request.system}] if request.system else [])
      messages += [{"role": m.role, "content": m.text} for m in request.messages]
      out = llm.create_chat_completion(messages=messages, temperature=request.temperature,
                                       max_tokens=request.max_output_tokens, seed=seed,
                                       grammar=grammar)
      return out["choices"][0]["message"]["content"] or "", out
    out = llm.create_completion(plain_transcript(request), temperature=request.temperature,
                                max_tokens=request.max_output_tokens, seed=seed, grammar=grammar,
                                stop=None if grammar else list(_PLAIN_STOP))
    return out["choices"][0]["text"] or "", out

  def info(self) -> dict[str, Any]:
    """What the run records of the model."""
    return {"path": self.path, "model": self.model, "chat_template": self.chat_template,
            "n_threads": self.n_threads, "train_context": self.train_context,
            "n_ctx": {purpose: llm.n_ctx() for purpose, llm in self._llms.items()}}

