"""ECG-R1 in process on a GPU through vLLM's offline `LLM`, with the authors' plugin. Optional: import-guarded.

What has to be true for this to run (each is checked, and a missing one is a ReasonerUnavailable saying which):
* `vllm` importable. The authors pin vllm==0.11.0 (requirements.txt of PKUDigitalHealth/ECG-R1); their plugin
  subclasses vLLM internals, so other versions may not load it.
* the authors' plugin installed as a package: their `ecg_r1/setup.py` declares the entry point
  `vllm.general_plugins: ecg_r1 = ecg_r1.vllm_plugin:register`, which vLLM calls in *every* process it starts
  (the engine core runs in a separate process, so registering only here would not reach it). `register()` adds
  `ECGR1ForConditionalGeneration` to vLLM's ModelRegistry; the model class registers the `ecg` modality processor.
  We also call `register()` here (it is idempotent per process) so a registry check can run before loading.
  When VLLM_PLUGINS is set, it must name `ecg_r1`, or vLLM skips the plugin.
* `ecg_coca` importable (the authors' signal-encoder code; the plugin builds the encoder with it) and the encoder
  checkpoint `cpt_wfep_epoch_20.pt` on local disk: given here, it is passed as the config attribute
  `ecg_tower_path` (`hf_overrides`), which the plugin reads before the environment variable of the same name.
* the model directory on local disk. Nothing is downloaded: HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE are set before
  vLLM is imported, and only a local path is accepted.

Prompt: the `<ecg>` marker becomes the plugin's `<|ecg_start|><|ecg_pad|><|ecg_end|>` (its processor expands the
pad to 101 tokens), wrapped in the model's own chat template with the authors' system message.
One generation path: `VllmReasoner.generate` (blocking, one at a time per engine) is what `reason` runs in its
worker thread and what the HTTP serving shim (serve.py, `VllmGenerator`) calls for each request.
Timeouts: offline `LLM.generate` cannot be aborted from another thread. `reason` waits at most `timeout_s` for a
worker thread and then raises ReasonerTimeout; the orphaned generation still runs to max_tokens (bounded, ~1-2 min
on one GPU) and the backend refuses new work until it ends. For a latency-bound service, serve the model behind
the HTTP endpoint (http_backend), where a timed-out request is aborted by the server.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from engine.reasoner.base import RawReasoning, Reasoner, check_ecg_array, check_timeout
from engine.reasoner.errors import ReasonerTimeout, ReasonerUnavailable
from engine.reasoner.prompt import ECGR1_MAX_TOKENS, ECGR1_SYSTEM_PROMPT, ECGR1_TEMPERATURE, split_prompt

ARCHITECTURE = "ECGR1ForConditionalGeneration"
PLUGIN_MODULE = "ecg_r1.vllm_plugin"
PLUGIN_GROUP = "vllm.general_plugins"
ECG_PLACEHOLDER = "<|ecg_start|><|ecg_pad|><|ecg_end|>"
# Qwen chat format, used only if the checkpoint's tokenizer carries no chat template.
_QWEN_FALLBACK_TEMPLATE = ("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                           "<|im_start|>assistant\n")


def plugin_entry_point() -> str | None:
    """The installed entry point value for the authors' plugin (e.g. 'ecg_r1.vllm_plugin:register'), or None."""
    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.value.split(":")[0] == PLUGIN_MODULE or ep.name == "ecg_r1":
            return ep.value
    return None


def check_environment(model_path: Path, ecg_tower_path: Path | None) -> Path:
    """Every precondition that can be checked without a GPU; returns the encoder checkpoint to use."""
    if importlib.util.find_spec("vllm") is None:
        raise ReasonerUnavailable(
            "vllm is not installed: the in-process ECG-R1 backend needs a GPU machine with vllm==0.11.0 "
            "(pip install 'vllm==0.11.0') and the ECG-R1 plugin; or use HttpReasoner against a served model",
            "backend-missing")
    if plugin_entry_point() is None:
        raise ReasonerUnavailable(
            f"the ECG-R1 vLLM plugin is not installed (no '{PLUGIN_GROUP}' entry point for {PLUGIN_MODULE}): "
            "install the authors' ecg_r1 package (pip install ./ecg_r1 from PKUDigitalHealth/ECG-R1)",
            "plugin-missing")
    allowed = os.environ.get("VLLM_PLUGINS")
    if allowed is not None and "ecg_r1" not in [p.strip() for p in allowed.split(",")]:
        raise ReasonerUnavailable(f"VLLM_PLUGINS={allowed!r} does not include ecg_r1, so vLLM would skip it",
                                  "plugin-disabled")
    if importlib.util.find_spec("ecg_coca") is None:
        raise ReasonerUnavailable("ecg_coca (the authors' ECG encoder code) is not importable: put the ECG-R1 "
                                  "repository root on PYTHONPATH", "plugin-missing")
    if not (model_path / "config.json").is_file():
        raise ReasonerUnavailable(f"no model at {model_path} (config.json missing); only local paths are used",
                                  "model-missing")
    tower = ecg_tower_path or _configured_tower(model_path)
    if tower is None or not Path(tower).is_file():
        raise ReasonerUnavailable(f"ECG encoder checkpoint not found ({tower or 'not configured'}): pass "
                                  "ecg_tower_path=<local cpt_wfep_epoch_20.pt>", "model-missing")
    return Path(tower)


def _configured_tower(model_path: Path) -> Path | None:
    try:
        value = json.loads((model_path / "config.json").read_text()).get("ecg_tower_path")
    except (OSError, ValueError):
        return None
    return Path(value) if value else None


class VllmGeneration(NamedTuple):
    text: str
    completion_tokens: int
    finish_reason: str | None
    prompt_tokens: int | None  # with the 101 ECG pad tokens, when vLLM reports it


class VllmReasoner(Reasoner):
    def __init__(self, model_path: str | Path, *, ecg_tower_path: str | Path | None = None,
                 model_name: str = "ECG-R1-8B-RL", model_version: str | None = None,
                 system_prompt: str | None = ECGR1_SYSTEM_PROMPT, max_tokens: int = ECGR1_MAX_TOKENS,
                 gpu_memory_utilization: float = 0.85, max_model_len: int = 8192,
                 llm_kwargs: dict[str, Any] | None = None) -> None:
        self.model_path = Path(model_path).expanduser().resolve()
        self.tower_path = check_environment(self.model_path, Path(ecg_tower_path) if ecg_tower_path else None)
        self.model = model_name
        self.model_version = model_version
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self._llm_kwargs = {
            "model": str(self.model_path), "tokenizer": str(self.model_path), "dtype": "bfloat16",
            "gpu_memory_utilization": gpu_memory_utilization, "max_model_len": max_model_len, "seed": 0,
            "trust_remote_code": False,
            # The published config may name the Qwen3-VL class, which would load without the ECG path; the
            # encoder path in it is the authors' machine's. Both are overridden.
            "hf_overrides": {"architectures": [ARCHITECTURE], "ecg_tower_path": str(self.tower_path)},
            "limit_mm_per_prompt": {"ecg": 1, "image": 0, "video": 0},
            **(llm_kwargs or {}),
        }
        self._llm = None
        self._sampling_params: Any = None
        self._lock = threading.Lock()
        self._engine_lock = threading.Lock()  # offline LLM.generate is not re-entrant: one generation at a time
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecg-r1")
        self._orphan: Future | None = None  # a generation whose caller timed out, still holding the engine

    def load(self) -> None:
        """Build the engine (minutes: 17.7 GB of weights). Called by the first `reason` if not called before."""
        with self._lock:
            if self._llm is not None:
                return
            for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
                os.environ[key] = "1"
            os.environ.setdefault("ECG_TOWER_PATH", str(self.tower_path))  # read by spawned engine processes too
            try:
                vllm = importlib.import_module("vllm")
                importlib.import_module(PLUGIN_MODULE).register()
                self._llm = vllm.LLM(**self._llm_kwargs)
            except ImportError as exc:
                raise ReasonerUnavailable(f"vllm or the ECG-R1 plugin failed to import: {exc}",
                                          "backend-missing") from None
            self._sampling_params = vllm.SamplingParams

    def _prompt_text(self, prompt: str, system_prompt: str | None) -> str:
        before, after = split_prompt(prompt)
        user = before + ECG_PLACEHOLDER + after
        tokenizer = self._llm.get_tokenizer()
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": user}]
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return _QWEN_FALLBACK_TEMPLATE.format(system=system_prompt or "", user=user)

    def generate(self, ecg: np.ndarray, prompt: str, *, system_prompt: str | None = None,
                 max_tokens: int | None = None, temperature: float = ECGR1_TEMPERATURE) -> VllmGeneration:
        """One blocking generation on a checked (12, 5000) float32 array; loads the engine on first use.
        Defaults are this backend's (its system prompt, its max_tokens); the serving shim passes the request's."""
        self.load()
        try:
            import torch

            data: Any = torch.from_numpy(ecg)
        except ImportError:
            data = ecg
        sampling = self._sampling_params(temperature=temperature, n=1,
                                         max_tokens=self.max_tokens if max_tokens is None else max_tokens)
        system = self.system_prompt if system_prompt is None else system_prompt
        request = {"prompt": self._prompt_text(prompt, system), "multi_modal_data": {"ecg": data}}
        with self._engine_lock:
            result = self._llm.generate([request], sampling_params=sampling, use_tqdm=False)[0]
        out = result.outputs[0]
        prompt_ids = getattr(result, "prompt_token_ids", None)
        return VllmGeneration(out.text, len(out.token_ids), out.finish_reason,
                              len(prompt_ids) if prompt_ids is not None else None)

    def reason(self, ecg: np.ndarray, prompt: str, *, timeout_s: float) -> RawReasoning:
        """Concurrent calls queue for the one engine within their own deadlines (loading counts too). A call that
        timed out leaves its generation running (offline vLLM cannot abort one); until it ends, new calls are
        refused as busy rather than queued behind it."""
        timeout_s = check_timeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        arr = check_ecg_array(ecg)
        split_prompt(prompt)  # refuse a prompt with several markers before loading anything
        self.load()
        if time.monotonic() >= deadline:  # loading took the whole budget: submitting now would only leave an orphan
            raise ReasonerTimeout(f"ECG-R1 did not finish within {timeout_s:g} s (the model was still loading)")
        with self._lock:
            if self._orphan is not None and not self._orphan.done():
                raise ReasonerUnavailable("a previous generation that timed out is still running", "busy")
            started = time.monotonic()
            future = self._pool.submit(self.generate, arr, prompt)
        try:
            text, tokens, finish, _ = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            if not future.cancel():  # already generating: it holds the engine until it ends
                with self._lock:
                    self._orphan = future
            raise ReasonerTimeout(f"ECG-R1 did not finish within {timeout_s:g} s") from None
        except ReasonerUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - engine errors (CUDA OOM, plugin errors) mean no answer
            raise ReasonerUnavailable(f"vLLM generation failed: {type(exc).__name__}: {exc}", "engine-error") from None
        return RawReasoning(text=text, model=self.model, latency_ms=round((time.monotonic() - started) * 1000, 1),
                            tokens=tokens, finish_reason=finish)
