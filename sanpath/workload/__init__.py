"""Users of the stack, not parts of it: the demos."""
