"""A small list-price table, for the cost estimate in `LLMClient.stats()`.

Prices are USD per million tokens (input, output) for standard, non-batch, short-context calls,
as the providers listed them in 2025; they drift, so treat the estimate as an order of magnitude.
Unknown models (local servers, the offline agent) cost 0.
"""

from __future__ import annotations

# model-name prefix -> (USD per 1M input tokens, USD per 1M output tokens)
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.0-flash-lite": (0.075, 0.30),
    "gemini-2.0-flash": (0.10, 0.40),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


def estimate_cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
  """Estimated list price of one call.

  The longest table prefix of the model name wins, so 'gpt-4o-2024-08-06' is priced as gpt-4o and
  'gpt-4o-mini' as gpt-4o-mini; a 'models/' prefix (as Gemini reports names) is ignored.

  Args:
    model: the model name the server reported.
    input_tokens: prompt tokens.
    output_tokens: reply tokens (including any thinking tokens).

  Returns:
    USD; 0.0 for a model not in `PRICES_PER_MILLION`.
  """
  name = model.lower().removeprefix("models/")
  matches = [prefix for prefix in PRICES_PER_MILLION if name.startswith(prefix)]
  if not matches:
    return 0.0
  price_in, price_out = PRICES_PER_MILLION[max(matches, key=len)]
  return (input_tokens * price_in + output_tokens * price_out) / 1e6
