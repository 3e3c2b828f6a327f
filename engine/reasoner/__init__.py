"""ECG-R1 reasoning for flagged ECGs (docs/SPEC.md §6): normalise the record, run the model through one of its backends,
parse its Step 1..6 reasoning and answer, and check its lead-level claims against the engine's measurements.

Research use only: the model's text is quoted as unverified output beside the measured criteria, never in their
place. Importing this package loads no model; the backends that run one (HTTP client, in-process vLLM) live in
`integrations.reasoner`.
"""
from engine.reasoner.base import RawReasoning, Reasoner, check_ecg_array
from engine.reasoner.claims import Claim, extract_claims
from engine.reasoner.crosscheck import CrossCheck, check_claims, cross_check
from engine.reasoner.errors import ReasonerError, ReasonerInputError, ReasonerTimeout, ReasonerUnavailable
from engine.reasoner.normalise import ECGR1_FS, ECGR1_LEADS, ECGR1_SAMPLES, NormalisedEcg, normalise
from engine.reasoner.orchestrate import ReasoningResult, areason_and_check, reason_and_check, to_report_dict
from engine.reasoner.parse import ParsedReasoning, Step, parse_reasoning
from engine.reasoner.prompt import ECGR1_PROMPT, ECGR1_SYSTEM_PROMPT

__all__ = [
    "Claim", "CrossCheck", "ECGR1_FS", "ECGR1_LEADS", "ECGR1_PROMPT", "ECGR1_SAMPLES", "ECGR1_SYSTEM_PROMPT",
    "NormalisedEcg", "ParsedReasoning", "RawReasoning", "Reasoner", "ReasonerError",
    "ReasonerInputError", "ReasonerTimeout", "ReasonerUnavailable", "ReasoningResult", "Step",
    "areason_and_check", "check_claims", "check_ecg_array", "cross_check", "extract_claims", "normalise",
    "parse_reasoning", "reason_and_check", "to_report_dict",
]

