# The two commands of the README. Both set up everything they need on a fresh machine.
.PHONY: setup demo test lint

setup:
	./scripts/setup.sh

# Main job: caption the bundled demo scenes. Until the shipped default model lands, a throwaway
# model is first trained on the demo scenes themselves (about a minute on 2 cores).
demo: setup
	.venv/bin/python scripts/train_demo_model.py runs/demo-model
	.venv/bin/edge-dac caption --model runs/demo-model edge_dac/assets/demo/*.flac

test: setup
	.venv/bin/ruff check .
	./scripts/test.sh

lint:
	.venv/bin/ruff check .
