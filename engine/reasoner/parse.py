"""Parse ECG-R1 output: `<think>` Step 1..6 `</think>` narrative `<answer>label; label</answer>`.

The format is the authors' (their SFT corpus template): six bold step headings with fixed titles, one paragraph
each, a narrative paragraph after `</think>`, and semicolon-separated labels in `<answer>`. Nothing here raises:
any input (empty, junk, cut off at the token limit, headings paraphrased, tags missing or doubled, text after
`</answer>`) gives a ParsedReasoning whose `problems` say what is wrong.
`complete` means the structure is all there: `<think>` closed, steps 1-6 present, in order and non-empty,
`<answer>` closed with at least one label, and the generation not stopped by the token limit. Cosmetic
problems (a paraphrased step title, text after `</answer>`) are listed but do not make it incomplete.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

STEP_TITLES: dict[int, str] = {
    1: "Technical, Rate & Rhythm",
    2: "Conduction, Axis & Intervals",
    3: "Chamber Hypertrophy & Voltage",
    4: "Ischemia, Infarction & Mimics",
    5: "Electrolytes & QT",
    6: "Final Medical Reasoning",
}
_STEP_HEAD = re.compile(
    r"^[ \t>#]*(?:\*\*|__)?[ \t]*Step[ \t]*(\d{1,2})[ \t]*[:.)\-\u2013\u2014]?[ \t]*"
    r"(?P<title>[^\n]*?)[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*$",
    re.IGNORECASE | re.MULTILINE)
_BOLD_INLINE = re.compile(r"^\*\*(?P<title>[^*\n]+?)\*\*[ \t]*:?[ \t]*(?P<rest>.*)$")
_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)


@dataclass
class Step:
    number: int
    title: str
    text: str


@dataclass
class ParsedReasoning:
    steps: list[Step] = field(default_factory=list)
    think: str | None = None  # the whole <think> body as received
    narrative: str = ""  # between </think> and <answer>
    answer_raw: str | None = None
    labels: list[str] = field(default_factory=list)
    complete: bool = False
    problems: list[str] = field(default_factory=list)

    def step(self, number: int) -> Step | None:
        return next((s for s in self.steps if s.number == number), None)


def parse_reasoning(text: object, finish_reason: str | None = None) -> ParsedReasoning:
    out = ParsedReasoning()
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.strip():
        out.problems.append("empty output")
        return out
    problems = out.problems
    s = text.replace("\r\n", "\n").strip()
    truncated = finish_reason == "length"
    if truncated:
        problems.append("generation stopped at the token limit (output truncated)")

    lower = s.lower()
    t_open, t_close = lower.find("<think>"), lower.find("</think>")
    a_open = lower.find("<answer>")
    a_close = lower.find("</answer>", a_open + 1) if a_open >= 0 else lower.find("</answer>")
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        if lower.count(tag) > 1:
            problems.append(f"{tag} appears {lower.count(tag)} times (first used)")

    if t_open < 0:
        problems.append("no <think> block")
        body_start = 0
    else:
        if s[:t_open].strip():
            problems.append("text before <think>")
        body_start = t_open + len("<think>")
    if t_close >= 0 and t_close >= body_start:
        think_end, after_think = t_close, t_close + len("</think>")
    else:
        if t_open >= 0:
            problems.append("no </think> (output cut off inside the reasoning?)")
        think_end = a_open if a_open >= body_start else len(s)
        after_think = think_end
    if t_open >= 0 or t_close >= 0:
        out.think = s[body_start:think_end].strip()
        _parse_steps(out.think, out, closed=t_close >= 0)
    elif _STEP_HEAD.search(s[:a_open] if a_open >= 0 else s):  # steps without the tags: still worth reading
        _parse_steps(s[:a_open] if a_open >= 0 else s, out, closed=True)
    else:
        problems.append("no Step 1-6 reasoning found")

    if a_open < 0:
        problems.append("no <answer>")
        out.narrative = _clean(s[after_think:]) if t_close >= 0 else ""
    else:
        out.narrative = _clean(s[after_think:a_open]) if a_open >= after_think else ""
        start = a_open + len("<answer>")
        if a_close < 0:
            problems.append("no </answer> (answer cut off?)")
            out.answer_raw = _clean(s[start:])
        else:
            out.answer_raw = _clean(s[start:a_close])
            if _clean(s[a_close + len("</answer>"):]):
                problems.append("text after </answer>")
        out.labels = split_labels(out.answer_raw)
        if not out.labels:
            problems.append("empty <answer>")

    steps_ok = [s_.number for s_ in out.steps] == list(STEP_TITLES) and all(s_.text for s_ in out.steps)
    out.complete = bool(t_close >= 0 and steps_ok and a_open >= 0 and a_close >= 0 and out.labels and not truncated)
    return out


def split_labels(answer: str | None) -> list[str]:
    """Labels split on ';' (and line breaks), trimmed of spaces, bullets and a final full stop; duplicates dropped."""
    if not answer:
        return []
    labels: list[str] = []
    for piece in re.split(r"[;\n]", answer):
        label = piece.strip().lstrip("-*\u2022 ").rstrip(". ").strip()
        if label and label.lower() not in (x.lower() for x in labels):
            labels.append(label)
    return labels


def _clean(text: str) -> str:
    return _TAG.sub("", text).strip()


def _parse_steps(think: str, out: ParsedReasoning, closed: bool) -> None:
    heads = list(_STEP_HEAD.finditer(think))
    if not heads:
        out.problems.append("no Step headings in <think>")
        return
    if think[:heads[0].start()].strip():
        out.problems.append("text before Step 1 heading")
    seen: set[int] = set()
    for i, m in enumerate(heads):
        number = int(m.group(1))
        end = heads[i + 1].start() if i + 1 < len(heads) else len(think)
        title, body = _split_title(m.group(0).strip(), m.group("title"))
        body = (body + "\n" + think[m.end():end]).strip()
        if number in seen:
            out.problems.append(f"step {number} appears more than once")
            continue
        seen.add(number)
        expected = STEP_TITLES.get(number)
        if expected is None:
            out.problems.append(f"unexpected step {number}")
        elif title and title.lower().rstrip(":") != expected.lower():
            out.problems.append(f"step {number} title {title!r} differs from ECG-R1's {expected!r}")
        if not body:
            out.problems.append(f"step {number} is empty")
        out.steps.append(Step(number=number, title=title or (expected or ""), text=" ".join(body.split())))
    numbers = [s.number for s in out.steps]
    if numbers != sorted(numbers):
        out.problems.append("steps out of order: " + ", ".join(map(str, numbers)))
    missing = [n for n in STEP_TITLES if n not in seen]
    if missing:
        out.problems.append("missing step(s) " + ", ".join(map(str, missing)))
    if not closed and out.steps:
        out.problems.append(f"output ends inside step {out.steps[-1].number} (truncated)")


def _split_title(line: str, title: str) -> tuple[str, str]:
    """Heading text -> (title, text on the same line). A known title at the start of the line wins."""
    title = title.strip().strip("*_ ").strip()
    bold = _BOLD_INLINE.match(line.lstrip("># \t"))
    if bold and bold.group("rest").strip():  # "**Step 1: Title** text..."
        inner = re.sub(r"^Step\s*\d+\s*[:.)\-\u2013\u2014]?\s*", "", bold.group("title"), flags=re.IGNORECASE)
        return inner.strip(), bold.group("rest").strip()
    for known in STEP_TITLES.values():
        if title.lower().startswith(known.lower()) and len(title) > len(known):
            rest = title[len(known):].lstrip(" :.*-\u2013\u2014")
            return known, rest
    return title, ""
