"""Training, in the order a reader meets it:

- `config`: what a run is asked to do (TrainConfig), checked against its limits.
- `presets`: named recipes.
- `schedule`: the learning rate over the steps, the optimizer, and when each measurement is taken.
- `threads`: the process's one torch thread count, shared by every run training in it.
- `loop`: the training loop itself, which reports what it does as events to its observers.
- `observers`: the live hub and the run's folder, each an observer of those events.
- `trainer`: the loop in a background thread, with start, pause, stop and reset, and the live model it publishes.
"""
