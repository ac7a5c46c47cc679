"""The core: contract, transform, DoFns, engine, batching, model holding,
refresh, failures and metrics. Knows no framework."""
