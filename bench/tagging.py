"""Tagging quality and throughput.

    python bench/tagging.py                 # quality on both halves + throughput
    python bench/tagging.py --split tune --errors   # what the rules get wrong (tune on this)
    python bench/tagging.py --packs 2000    # a quicker throughput run

Quality: tests/data/tagging_eval.jsonl, labelled by hand, split into a ``tune`` half (rules are
adjusted against its errors) and a ``heldout`` half (only measured). Per group precision, recall
and F1 over the six group ids (``public`` included: it is a real output), micro-F1 over groups and
over topics. Only title and summary are given, as a feed item's lead.

Throughput: ``--packs`` generated packs of about 2 KB (UTF-8) of Chinese text each: an eval
title, then eval summaries mixed with filler sentences. Our Tagger (one compiled pattern) against
a naive baseline that tests every keyword of the same rules with ``in`` on each field (and counts
the ones present), with the same normalization and the same scoring, in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from media_matrix.config import RuleConfig, Settings, load_rules  # noqa: E402
from media_matrix.models import GROUPS, TOPICS  # noqa: E402
from media_matrix.tagging import (  # noqa: E402
    MAX_BODY_CHARS,
    Tagger,
    normalize,
    repeat_factor,
    tagger_for,
)

EVAL_FILE = ROOT / "tests" / "data" / "tagging_eval.jsonl"
TARGETS = {"group_micro_f1": 0.85, "group_recall": 0.80, "topic_micro_f1": 0.75, "speedup": 5.0}

FILLERS = (
    "据了解，本次活动由市科协联合相关部门共同主办，持续三天。",
    "活动现场还设置了互动体验区，吸引了不少市民驻足参与。",
    "主办方表示，今后将继续开展形式多样的科普宣传活动。",
    "记者在现场看到，展板图文并茂，讲解通俗易懂。",
    "专家指出，科学知识只有走进日常生活，才能真正发挥作用。",
    "据统计，今年以来全市已累计开展各类科普活动两百余场。",
    "下一步，有关部门将进一步完善工作机制，扩大覆盖范围。",
    "参加活动的群众纷纷表示，收获很大，希望多举办这样的活动。",
    "相关负责人介绍，此次宣传共发放资料三千余份。",
    "该项目自启动以来，得到了社会各界的广泛关注和支持。",
    "文章来源：科普中国，转载请注明出处。",
    "编辑：张明  审核：李华",
    "更多精彩内容，请关注本公众号。",
    "会议强调，要坚持问题导向，把各项措施落到实处。",
    "与此同时，线上直播观看人次也创下新高。",
    "值得一提的是，今年的展品中有不少是首次亮相。",
)


# -- data ---------------------------------------------------------------------------------------


def load_eval(path: Path = EVAL_FILE) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def default_settings() -> Settings:
    """Settings as a config without inline rules sees them: the rules shipped with the package."""
    settings = Settings(path=ROOT / "config.yaml")
    settings.groups, settings.topics = load_rules(settings)
    return settings


def default_tagger(engine: str = "auto") -> Tagger:
    return tagger_for(default_settings(), engine=engine)


# -- quality ------------------------------------------------------------------------------------


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def evaluate(tagger: Tagger, items: Iterable[dict]) -> dict:
    """Per-label counts and scores for groups and topics, plus the items with an error."""
    counts = {"groups": Counter(), "topics": Counter()}
    labels = {"groups": list(GROUPS), "topics": list(TOPICS)}
    errors = []
    n = 0
    for item in items:
        n += 1
        result = tagger.tag(item["title"], item.get("summary", ""))
        got = {"groups": set(result.group_ids), "topics": set(result.topic_ids)}
        wrong = False
        for kind in ("groups", "topics"):
            want = set(item[kind])
            for label in got[kind] | want:
                if label not in labels[kind]:
                    labels[kind].append(label)
                if label in got[kind] and label in want:
                    counts[kind][label, "tp"] += 1
                elif label in got[kind]:
                    counts[kind][label, "fp"] += 1
                    wrong = True
                else:
                    counts[kind][label, "fn"] += 1
                    wrong = True
        if wrong:
            errors.append((item, result))
    out: dict = {"n": n, "errors": errors}
    for kind in ("groups", "topics"):
        per = {}
        totals = Counter()
        for label in labels[kind]:
            tp, fp, fn = (counts[kind][label, x] for x in ("tp", "fp", "fn"))
            totals.update(tp=tp, fp=fp, fn=fn)
            per[label] = (*prf(tp, fp, fn), tp + fn)
        out[kind] = per
        out[f"{kind}_micro"] = prf(totals["tp"], totals["fp"], totals["fn"])
    return out


def print_quality(name: str, report: dict) -> None:
    print(f"\n== {name}: {report['n']} items ==")
    print(f"{'group':<10} {'P':>6} {'R':>6} {'F1':>6} {'n':>4}")
    for label, (p, r, f, support) in report["groups"].items():
        print(f"{label:<10} {p:6.3f} {r:6.3f} {f:6.3f} {support:4d}")
    p, r, f = report["groups_micro"]
    print(f"{'micro':<10} {p:6.3f} {r:6.3f} {f:6.3f}   <- groups micro-F1 {f:.3f}")
    print(f"{'topic':<12} {'P':>6} {'R':>6} {'F1':>6} {'n':>4}")
    for label, (p, r, f, support) in report["topics"].items():
        print(f"{label:<12} {p:6.3f} {r:6.3f} {f:6.3f} {support:4d}")
    p, r, f = report["topics_micro"]
    print(f"{'micro':<12} {p:6.3f} {r:6.3f} {f:6.3f}   <- topics micro-F1 {f:.3f}")


def print_errors(report: dict) -> None:
    print(f"\n-- {len(report['errors'])} items with an error --")
    for item, result in report["errors"]:
        print(f"{item['id']} {item['title']} | {item['summary']}")
        print(f"    want groups={item['groups']} topics={item['topics']}")
        print(f"    got  groups={result.group_ids} topics={result.topic_ids}")
        for tag in result.tags:
            if tag.reason:
                print(f"      {tag.tag}: {tag.reason}")


def check_targets(report: dict) -> list[str]:
    """The held-out targets that are missed (empty when all are met)."""
    missed = []
    f1 = report["groups_micro"][2]
    if f1 < TARGETS["group_micro_f1"]:
        missed.append(f"group micro-F1 {f1:.3f} < {TARGETS['group_micro_f1']}")
    for label, (_, recall, _, support) in report["groups"].items():
        if support and recall < TARGETS["group_recall"]:
            missed.append(f"group {label} recall {recall:.3f} < {TARGETS['group_recall']}")
    f1 = report["topics_micro"][2]
    if f1 < TARGETS["topic_micro_f1"]:
        missed.append(f"topic micro-F1 {f1:.3f} < {TARGETS['topic_micro_f1']}")
    return missed


# -- throughput ---------------------------------------------------------------------------------


def generate_packs(items: Sequence[dict], count: int, size: int = 2048, seed: int = 7) -> list:
    """``count`` (title, summary, body) triples with a body of about ``size`` UTF-8 bytes.

    A pack takes an eval item's title and summary; its body mixes filler sentences with the
    summaries of eval items that share a topic with it (an article stays on its subject), and
    now and then one from anywhere.
    """
    rng = random.Random(seed)
    by_topic: dict[str, list[str]] = {}
    for item in items:
        for topic in item["topics"] or ["-"]:
            by_topic.setdefault(topic, []).append(item["summary"])
    everything = [item["summary"] for item in items]
    packs = []
    for _ in range(count):
        item = rng.choice(items)
        related = [s for t in item["topics"] or ["-"] for s in by_topic[t]]
        parts: list[str] = [item["summary"]]
        length = len(item["summary"].encode("utf-8"))
        while length < size:
            roll = rng.random()
            if roll < 0.45:
                sentence = rng.choice(related)
            elif roll < 0.55:
                sentence = rng.choice(everything)
            else:
                sentence = rng.choice(FILLERS)
            parts.append(sentence)
            length += len(sentence.encode("utf-8"))
        packs.append((item["title"], item["summary"], "".join(parts)))
    return packs


class NaiveTagger:
    """The baseline: every keyword of every rule tested with ``in`` on each field."""

    def __init__(
        self,
        groups: dict[str, RuleConfig],
        topics: dict[str, RuleConfig],
        threshold: float = 2.0,
        title_weight: float = 2.0,
    ) -> None:
        self.title_weight = title_weight
        self.rules = []
        for kind, table in (("group", groups), ("topic", topics)):
            for rule_id, rule in table.items():
                words = [(normalize(w), float(x)) for w, x in rule.keywords.items()]
                words += [(normalize(w), -abs(float(x))) for w, x in rule.negatives.items()]
                limit = rule.threshold if rule.threshold is not None else threshold
                self.rules.append((kind, rule_id, limit, words))

    def tag(self, title: str, summary: str = "", text: str = "") -> tuple[list[str], list[str]]:
        title, summary, text = (
            normalize(title),
            normalize(summary),
            normalize(text[:MAX_BODY_CHARS]),
        )
        lead = summary.rstrip("….。 ")
        if text and len(summary) >= 8 and lead in text[: len(lead) + 200]:
            summary = ""  # the same rule as the Tagger: a summary repeated as the lead counts once
        fields = ((title, self.title_weight), (summary, 1.0), (text, 1.0))
        groups, topics = [], []
        for kind, rule_id, limit, words in self.rules:
            score = 0.0
            for word, weight in words:
                for value, factor in fields:
                    if word in value:
                        score += weight * factor * repeat_factor(value.count(word))
            if score >= limit:
                (groups if kind == "group" else topics).append(rule_id)
        return groups or ["public"], topics


def throughput(packs: Sequence[tuple[str, str, str]], tag) -> float:
    start = time.perf_counter()
    for title, summary, body in packs:
        tag(title, summary, body)
    return len(packs) / (time.perf_counter() - start)


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("tune", "heldout", "both"), default="both")
    parser.add_argument("--errors", action="store_true", help="list the items tagged wrong")
    parser.add_argument("--packs", type=int, default=10_000, help="packs for throughput (0: skip)")
    parser.add_argument(
        "--engine", choices=("auto", "aho-corasick", "regex"), default="auto", help="matcher"
    )
    args = parser.parse_args(argv)

    settings = default_settings()
    groups, topics = settings.groups, settings.topics
    tagger = default_tagger(args.engine)
    items = load_eval()
    splits = ("tune", "heldout") if args.split == "both" else (args.split,)
    heldout_missed: list[str] = []
    for split in splits:
        report = evaluate(tagger, [i for i in items if i["split"] == split])
        print_quality(split, report)
        if args.errors:
            print_errors(report)
        if split == "heldout":
            heldout_missed = check_targets(report)
            print("held-out targets:", "met" if not heldout_missed else "; ".join(heldout_missed))

    speedup_ok = True
    if args.packs > 0:
        packs = generate_packs(items, args.packs)
        avg = sum(len("".join(p).encode("utf-8")) for p in packs) / len(packs)
        naive = NaiveTagger(
            groups, topics, settings.tagging.threshold, settings.tagging.title_weight
        )
        print(
            f"\n== throughput: {len(packs)} packs, {avg:.0f} bytes on average, "
            f"{tagger.keyword_count} keywords in {len(tagger.rules)} rules, "
            f"engine {tagger.engine} =="
        )
        throughput(packs[:200], tagger.tag)  # warm up
        ours = throughput(packs, tagger.tag)
        base = throughput(packs, naive.tag)
        ratio = ours / base
        speedup_ok = ratio >= TARGETS["speedup"]
        print(f"Tagger (one automaton, with reasons): {ours:8.0f} packs/s")
        print(f"naive baseline (`in` per keyword):    {base:8.0f} packs/s")
        print(f"ratio: {ratio:.1f}x (target >= {TARGETS['speedup']:.0f}x)")
    return 0 if not heldout_missed and speedup_ok else 1


if __name__ == "__main__":
    sys.exit(main())
