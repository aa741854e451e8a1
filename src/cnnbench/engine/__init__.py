"""Training and evaluating one model the Keras way: fit, evaluate, callbacks, metrics, the forward pass."""
