"""Measuring a model: optimizer and attention statistics, what each head is for (attribution, ownership, and its
words in labels), specialization over training, where the verdict forms (probes), and answers to pasted claims
(inference). May import the layers below it: engine.telemetry, engine.model, engine.runs, engine.task."""
