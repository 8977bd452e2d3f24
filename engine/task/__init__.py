"""The claims task in tensors: the model set to write verdicts and reasons, generated and imported claims turned into
training data. May import data/, engine.telemetry, engine.model and engine.runs."""
