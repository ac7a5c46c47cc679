"""The columnar path: chunk types, matrix predictors and the chunk scorer."""
