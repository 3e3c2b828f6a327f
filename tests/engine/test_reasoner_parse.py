"""parse_reasoning(): ECG-R1's <think> Step 1..6 </think> narrative <answer>a; b</answer>, and everything that can
go wrong with it (truncation, missing tags, junk, empty, extra text). It must never raise."""
from __future__ import annotations

import random

import pytest

from engine.reasoner.parse import STEP_TITLES, parse_reasoning, split_labels
from integrations.reasoner.standin import load_outputs

OUT = load_outputs()


def _steps(n: int = 6, **override: str) -> str:
    parts = []
    for k in range(1, n + 1):
        title = override.get(f"t{k}", STEP_TITLES[k])
        parts.append(f"**Step {k}: {title}**\nParagraph {k} about the ECG.")
    return "\n\n".join(parts)


def test_well_formed_output():
    p = parse_reasoning(OUT["lateral-twi"]["text"], "stop")
    assert p.complete and p.problems == []
    assert [s.number for s in p.steps] == [1, 2, 3, 4, 5, 6]
    assert [s.title for s in p.steps] == list(STEP_TITLES.values())
    assert "T waves are inverted in V4, V5 and V6" in p.step(4).text
    assert p.labels == ["sinus rhythm", "incomplete right bundle branch block", "T wave inversion",
                        "myocardial ischemia"]
    assert p.narrative.startswith("The ECG shows sinus rhythm") and "<" not in p.narrative


def test_truncated_at_the_token_limit_mid_step():
    p = parse_reasoning(OUT["truncated"]["text"], "length")
    assert not p.complete
    assert [s.number for s in p.steps] == [1, 2, 3, 4] and p.labels == []
    for expected in ("token limit", "no </think>", "missing step(s) 5, 6", "ends inside step 4", "no <answer>"):
        assert any(expected in q for q in p.problems), expected


def test_no_answer_block():
    p = parse_reasoning(OUT["no-answer"]["text"])
    assert not p.complete and p.problems == ["no <answer>"] and len(p.steps) == 6
    assert p.narrative.startswith("Normal sinus rhythm")


def test_text_after_answer_is_flagged_but_structure_complete():
    p = parse_reasoning(OUT["trailing-text"]["text"])
    assert p.complete and p.problems == ["text after </answer>"]
    assert p.labels == ["sinus rhythm", "normal ECG"]  # trailing full stop trimmed


@pytest.mark.parametrize("text", [None, "", "   \n", b"", 42])
def test_empty_or_not_text(text):
    p = parse_reasoning(text)
    assert not p.complete and p.problems == ["empty output"] and p.steps == [] and p.labels == []


def test_junk_without_any_structure():
    p = parse_reasoning(OUT["junk"]["text"])
    assert not p.complete and p.steps == [] and p.labels == []
    assert set(p.problems) == {"no <think> block", "no Step 1-6 reasoning found", "no <answer>"}


def test_answer_cut_off():
    p = parse_reasoning(f"<think>\n{_steps()}\n</think>\n<answer>sinus rhythm; T wave inv", "length")
    assert not p.complete and p.labels == ["sinus rhythm", "T wave inv"]
    assert any("no </answer>" in q for q in p.problems)


def test_missing_duplicate_and_out_of_order_steps():
    text = "<think>\n**Step 2: Conduction, Axis & Intervals**\nA.\n**Step 1: Technical, Rate & Rhythm**\nB.\n" \
           "**Step 2: Conduction, Axis & Intervals**\nC.\n</think><answer>x</answer>"
    p = parse_reasoning(text)
    assert not p.complete
    assert any("appears more than once" in q for q in p.problems)
    assert any("out of order" in q for q in p.problems)
    assert any("missing step(s) 3, 4, 5, 6" in q for q in p.problems)


def test_paraphrased_title_and_inline_heading():
    text = ("<think>\n" + _steps(t3="Voltage") + "\n</think>\n<answer>a</answer>").replace(
        "**Step 5: Electrolytes & QT**\nParagraph 5", "**Step 5: Electrolytes & QT** Paragraph 5")
    p = parse_reasoning(text)
    assert p.complete  # cosmetic only
    assert any("step 3 title 'Voltage'" in q for q in p.problems)
    assert p.step(5).title == "Electrolytes & QT" and p.step(5).text.startswith("Paragraph 5")


def test_plain_headings_and_missing_think_tags():
    text = "Step 1: Technical, Rate & Rhythm\nSinus rhythm.\nStep 2 - Conduction, Axis & Intervals\nNarrow QRS.\n" \
           "<answer>sinus rhythm</answer>"
    p = parse_reasoning(text)
    assert [s.number for s in p.steps] == [1, 2] and p.step(2).text == "Narrow QRS."
    assert not p.complete and "no <think> block" in p.problems


def test_empty_step_and_doubled_tags():
    text = f"<think>\n{_steps()}\n**Step 7: Extra**\n</think>\n<answer>a</answer><answer>b</answer>"
    p = parse_reasoning(text)
    assert any("unexpected step 7" in q for q in p.problems) and any("step 7 is empty" in q for q in p.problems)
    assert any("<answer> appears 2 times" in q for q in p.problems) and p.labels == ["a"]


def test_labels_split_trimmed_deduplicated():
    assert split_labels(" sinus rhythm ;T wave inversion; ; sinus rhythm.\n- LVH ") == \
        ["sinus rhythm", "T wave inversion", "LVH"]
    assert split_labels(None) == [] and split_labels("") == []


def test_never_raises_on_random_fragments():
    rng = random.Random(7)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "**Step 3: Chamber Hypertrophy & Voltage**", "Step",
              "Step 9:", ";", "\n", "T wave inversion in V1-V3", "\u2014", "**", "<", ">", "", "Step 1:", "\x00"]
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        p = parse_reasoning(text, rng.choice([None, "stop", "length"]))
        assert isinstance(p.complete, bool) and isinstance(p.problems, list)
