"""Training: optimisation loops shared by ``edge-dac train`` and the tests."""
