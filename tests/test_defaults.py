"""One decoding default: the daemon, `edge-dac caption`, `edge-dac eval` and the model card decode alike."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge_dac.daemon.config import EngineConfig
from edge_dac.evaluation.options import EvalOptions
from edge_dac.model.decoding import DecodingOptions

ROOT = Path(__file__).resolve().parents[1]


def test_daemon_eval_and_shipped_config_use_the_decoding_defaults():
    defaults = DecodingOptions()
    engine = EngineConfig()
    shipped = yaml.safe_load((ROOT / "configs" / "daemon.yaml").read_text())["engine"]
    evaluation = EvalOptions()
    for name in ("steps", "candidates", "event_guidance"):
        assert getattr(engine, name) == shipped[name] == getattr(evaluation, name) == getattr(defaults, name), name
