# The sans-I/O policy core: pure decisions from facts, `now` and random draws passed in.
