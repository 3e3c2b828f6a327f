"""A FAKE `vllm` module for CPU tests: it stands in for vLLM and the 9 B ECG-R1 model, which cannot run here.
It records what the backend hands to vLLM (engine arguments, requests, sampling) and answers a fixed text."""
from __future__ import annotations

import importlib.util
import sys
import time
import types

from integrations.reasoner import vllm_backend


def make_model_dir(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["Qwen3VLForConditionalGeneration"]}')
    tower = tmp_path / "cpt_wfep_epoch_20.pt"
    tower.write_bytes(b"not really a checkpoint")
    return tmp_path, tower


class FakeOut:
    def __init__(self, text):
        self.outputs = [types.SimpleNamespace(text=text, token_ids=list(range(7)), finish_reason="stop")]


class FakeLLM:
    instances: list[FakeLLM] = []
    delay_s = 0.0

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return types.SimpleNamespace(chat_template=None)

    def generate(self, requests, sampling_params=None, use_tqdm=True):
        self.calls.append((requests, sampling_params))
        time.sleep(FakeLLM.delay_s)
        return [FakeOut("<think>**Step 1: Technical, Rate & Rhythm**\nfake</think><answer>fake</answer>")]


def install_fake_vllm(monkeypatch, model_dir):
    """Put a fake `vllm` (and the authors' plugin package names) in sys.modules; returns (model_dir, registered)."""
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    plugin_pkg, plugin = types.ModuleType("ecg_r1"), types.ModuleType("ecg_r1.vllm_plugin")
    registered = []
    plugin.register = lambda: registered.append(True)
    for name, mod in (("vllm", vllm), ("ecg_r1", plugin_pkg), ("ecg_r1.vllm_plugin", plugin),
                      ("ecg_coca", types.ModuleType("ecg_coca"))):
        monkeypatch.setitem(sys.modules, name, mod)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: object() if n in ("vllm", "ecg_coca") else real_find_spec(n, *a))
    monkeypatch.setattr(vllm_backend, "plugin_entry_point", lambda: "ecg_r1.vllm_plugin:register")
    monkeypatch.delenv("VLLM_PLUGINS", raising=False)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ECG_TOWER_PATH"):
        monkeypatch.delenv(key, raising=False)
    FakeLLM.instances, FakeLLM.delay_s = [], 0.0
    return model_dir, registered
