"""Users of the stack, not parts of it: the bench load engine and the demos."""
