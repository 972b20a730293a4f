"""Runtime pieces the composition root wires: the clock, the waker and the send budgets."""
