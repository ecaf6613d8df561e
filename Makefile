# The two commands of the README. Both set up everything they need on a fresh machine.
.PHONY: setup demo test lint

setup:
	./scripts/setup.sh

# Main job: the daemon with the shipped default model (edge_dac/assets/model) on the bundled demo
# scenes (paced at real time, looped), captions printed as they come and published over ZeroMQ;
# Ctrl-C stops it.
demo: setup
	.venv/bin/edge-dac run --source demo --print

test: setup
	.venv/bin/ruff check .
	./scripts/test.sh

lint:
	.venv/bin/ruff check .
