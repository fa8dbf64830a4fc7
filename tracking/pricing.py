"""Model prices: an admin's override (versioned by effective date) first, then the genai-prices table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import genai_prices

from costmonitor.money import MONEY_QUANTUM

from .models import ModelPriceOverride

_MILLION = Decimal(1_000_000)
TABLE_VERSION = f"genai-prices {genai_prices.__version__}"


@dataclass(frozen=True)
class PriceQuote:
    cost_usd: Decimal
    source: str  # "override" | "genai-prices"
    version: str


def price_tokens(*, model_name: str, prompt_tokens: int, completion_tokens: int, at: datetime) -> PriceQuote | None:
    """Price a call from its tokens, or None when the model is unknown."""
    override = (ModelPriceOverride.objects.filter(model_name=model_name, effective_from__lte=at)
                .order_by("-effective_from").first())
    if override is not None:
        cost = (prompt_tokens * override.input_per_million_usd
                + completion_tokens * override.output_per_million_usd) / _MILLION
        return PriceQuote(cost.quantize(MONEY_QUANTUM, ROUND_HALF_UP), "override",
                          f"override {override.effective_from.isoformat()}")
    try:
        calculation = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens), model_ref=model_name,
            genai_request_timestamp=at)
    except LookupError:
        return None
    return PriceQuote(Decimal(calculation.total_price).quantize(MONEY_QUANTUM, ROUND_HALF_UP), "genai-prices",
                      TABLE_VERSION)
