"""Measuring a model: optimizer and attention statistics, what each head is for (attribution, ownership,
specialization), where the verdict forms (probes), and answers to pasted claims (inference). May import the layers
below it: engine.telemetry, engine.model, engine.runs, engine.task."""
