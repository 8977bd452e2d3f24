"""Training, in the order a reader meets it (may import every layer below it, through engine.recording):

- `config`: what a run is asked to do (TrainConfig), checked against its limits.
- `presets`: named recipes.
- `schedule`: the learning rate over the steps, the optimizer, and when each measurement is taken.
- `threads`: the process's one torch thread count, shared by every run training in it.
- `loop`: the training loop itself, which reports what it does as events (engine.recording) to its observers.
- `observers`: where the verdict forms, recorded while the run trains (the live hub and the run's folder are
  engine.recording's observers).
- `trainer`: the loop in a background thread, with start, pause, stop and reset, and the live model it publishes.
"""
