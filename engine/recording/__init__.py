"""Recording a training run as it goes: the events a loop emits, the observers that publish them live and save them,
TensorBoard files, and `watch` for anyone's own model. May import the layers below it, through engine.interpret."""
