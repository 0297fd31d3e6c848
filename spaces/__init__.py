"""Search spaces: architecture values, genotype grammars, Flax builders and cost counters."""
