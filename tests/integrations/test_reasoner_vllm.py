"""The in-process vLLM backend without a GPU: the import guard and each precondition give a clear
ReasonerUnavailable; with a fake `vllm` module, the wiring (offline, plugin architecture, encoder path, one ECG in
multi_modal_data, temperature 0 / 2048 tokens, prompt placeholder, timeout) is what ECG-R1 needs.
The real model (9 B parameters, 17.7 GB) is not run here."""
from __future__ import annotations

import importlib.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.reasoner import ECGR1_PROMPT, ReasonerTimeout, ReasonerUnavailable
from integrations.reasoner import vllm_backend
from integrations.reasoner.vllm_backend import ECG_PLACEHOLDER, VllmReasoner
from tests.support.fake_vllm import FakeLLM


def test_clear_error_when_vllm_is_absent(model_dir):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    path, tower = model_dir
    with pytest.raises(ReasonerUnavailable) as err:
        VllmReasoner(path, ecg_tower_path=tower)
    assert err.value.code == "backend-missing" and "vllm is not installed" in err.value.reason
    assert "HttpReasoner" in err.value.reason


def test_wiring_with_a_fake_vllm(fake_env):
    import os

    (path, tower), registered = fake_env
    r = VllmReasoner(path, ecg_tower_path=tower, model_version="rl-test")
    ecg = np.random.default_rng(1).normal(size=(12, 5000)).astype(np.float32)
    raw = r.reason(ecg, ECGR1_PROMPT, timeout_s=5)
    assert raw.text.endswith("<answer>fake</answer>") and raw.tokens == 7 and raw.finish_reason == "stop"
    assert raw.model == "ECG-R1-8B-RL" and registered == [True]
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    (llm,) = FakeLLM.instances
    kw = llm.kwargs
    assert kw["model"] == str(path.resolve()) and kw["dtype"] == "bfloat16"
    assert kw["hf_overrides"] == {"architectures": ["ECGR1ForConditionalGeneration"],
                                  "ecg_tower_path": str(tower.resolve())}
    assert kw["limit_mm_per_prompt"]["ecg"] == 1
    ((request,), params) = llm.calls[0]
    np.testing.assert_array_equal(np.asarray(request["multi_modal_data"]["ecg"]), ecg)
    assert params.temperature == 0 and params.max_tokens == 2048
    prompt = request["prompt"]
    assert prompt.count(ECG_PLACEHOLDER) == 1 and "<ecg>" not in prompt
    assert prompt.index(ECG_PLACEHOLDER) < prompt.index("Interpret the provided ECG")
    assert "clinical ECG assistant" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_concurrent_calls_queue_within_their_deadlines(fake_env):
    (path, tower), _ = fake_env
    r = VllmReasoner(path, ecg_tower_path=tower)
    FakeLLM.delay_s = 0.3
    ecg = np.zeros((12, 5000), np.float32)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda _: r.reason(ecg, ECGR1_PROMPT, timeout_s=5).text, range(2)))
    finally:
        FakeLLM.delay_s = 0.0
    assert all(results)  # the second waited for the first instead of being refused


def test_timeout_then_busy(fake_env):
    (path, tower), _ = fake_env
    r = VllmReasoner(path, ecg_tower_path=tower)
    FakeLLM.delay_s = 0.6
    ecg = np.zeros((12, 5000), np.float32)
    with pytest.raises(ReasonerTimeout):
        r.reason(ecg, ECGR1_PROMPT, timeout_s=0.1)
    with pytest.raises(ReasonerUnavailable) as err:  # the orphaned generation still holds the engine
        r.reason(ecg, ECGR1_PROMPT, timeout_s=0.1)
    assert err.value.code == "busy"
    time.sleep(0.7)
    FakeLLM.delay_s = 0.0
    assert r.reason(ecg, ECGR1_PROMPT, timeout_s=2).text


@pytest.mark.parametrize("broken, code", [
    ("no-plugin", "plugin-missing"), ("plugins-env", "plugin-disabled"), ("no-model", "model-missing"),
    ("no-tower", "model-missing"),
])
def test_each_precondition_is_named(fake_env, monkeypatch, tmp_path, broken, code):
    (path, tower), _ = fake_env
    if broken == "no-plugin":
        monkeypatch.setattr(vllm_backend, "plugin_entry_point", lambda: None)
    elif broken == "plugins-env":
        monkeypatch.setenv("VLLM_PLUGINS", "some_other_plugin")
    elif broken == "no-model":
        path = tmp_path / "nowhere"
    else:
        tower = tmp_path / "missing.pt"
    with pytest.raises(ReasonerUnavailable) as err:
        VllmReasoner(path, ecg_tower_path=tower)
    assert err.value.code == code


def test_areason_runs_off_the_event_loop(fake_env):
    import asyncio

    (path, tower), _ = fake_env
    r = VllmReasoner(path, ecg_tower_path=tower)
    main = threading.get_ident()
    seen = []
    original = FakeLLM.generate

    def spy(self, *a, **k):
        seen.append(threading.get_ident())
        return original(self, *a, **k)

    FakeLLM.generate = spy
    try:
        asyncio.run(r.areason(np.zeros((12, 5000), np.float32), ECGR1_PROMPT, timeout_s=5))
    finally:
        FakeLLM.generate = original
    assert seen and seen[0] != main
