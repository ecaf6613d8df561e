# The two commands of the README. Both set up everything they need on a fresh machine.
.PHONY: setup demo test lint

setup:
	./scripts/setup.sh

# Main job: the daemon on the bundled demo scenes (paced at real time, looped), captions printed as
# they come and published over ZeroMQ; Ctrl-C stops it. Until the shipped default model lands, a
# throwaway model is first trained on the demo scenes themselves (a minute or two on 2 cores).
demo: setup
	.venv/bin/python scripts/train_demo_model.py runs/demo-model
	.venv/bin/edge-dac run --source demo --print --model runs/demo-model

test: setup
	.venv/bin/ruff check .
	./scripts/test.sh

lint:
	.venv/bin/ruff check .
