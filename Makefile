# The two commands of the README. Both set up everything they need on a fresh machine.
.PHONY: setup demo test lint

setup:
	./scripts/setup.sh

# Main job: caption the bundled demo scenes with the shipped default model.
demo: setup
	.venv/bin/edge-dac caption edge_dac/assets/demo/*.flac

test: setup
	.venv/bin/ruff check .
	./scripts/test.sh

lint:
	.venv/bin/ruff check .
