"""Framework handlers: each loads a model file and runs one batch. Knows
nothing of Beam pipelines."""
