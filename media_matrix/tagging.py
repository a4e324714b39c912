"""Rules -> target groups and topics, each with its score and the reason for it. Pure: no I/O.

How a pack is scored
--------------------
* Every keyword and negative of every rule goes into ONE compiled automaton: an Aho-Corasick DFA
  (``ahocorasick-rs``, leftmost-longest) or, when that package is missing, one regular expression
  shaped as a character trie with the same semantics. A field is scanned once, whatever the
  number of keywords; matches are leftmost-longest and never overlap, so the 农民 inside 农民工
  is not a match of its own: 农民工 (a workers keyword and a farmers negative) takes the span.
* Text and keywords are folded the same cheap way before matching: lower case, and full-width
  letters and digits to ASCII (ＡＩ, ＰＭ２.５).
* A keyword adds ``weight x field factor x repeat factor`` to each rule that lists it; a negative
  subtracts the same way. The field factor is ``title_weight`` for the title and 1 for the summary
  and the body. The repeat factor grows with diminishing returns, ``min(1 + ln n, 3)``, so one
  long article that repeats a word cannot carry a tag on its own.
* Only the first ``MAX_BODY_CHARS`` characters of the body are scanned: the lead of an article
  says who it is for; the tail of a very long one only adds noise and time.
* A rule passes when its score reaches its own ``threshold`` (or the global one). A topic must
  also reach ``topic_share`` (0.3) of the best topic score of the pack: an article about fire
  safety that mentions 急救 once is not also a health article. Likewise a group needs
  ``group_share`` (0.2) of the best group score: a long article for rural seniors that mentions
  子女 five times is not also for youth.
* A source category (a 科普中国 column label, a pack.yaml topic) equal to a rule's id, label or one
  of its ``categories`` passes that rule outright, as do hints from a local pack's pack.yaml;
  such a tag scores ``threshold + max(keyword score, 0)``, and its reason spells that sum out.
* Several groups and topics may pass (multi-label). When no key group passes, the group is
  ``public``.

Reasons are Chinese and list what matched where, e.g.
``标题命中 农民(3.0); 正文命中 种植(1.0)×2; 得分 8.0/阈值 2.0``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from media_matrix.models import GROUPS, KEY_GROUPS, Tag

try:  # the fast automaton; the stdlib trie regex below is the fallback
    import ahocorasick_rs
except ImportError:  # pragma: no cover - exercised by forcing engine="regex" in tests
    ahocorasick_rs = None

if TYPE_CHECKING:
    from media_matrix.config import RuleConfig

MAX_BODY_CHARS = 20_000
REPEAT_CAP = 3.0
PUBLIC = "public"

_FIELDS = ("标题", "摘要", "正文")  # title, summary, body
_HEADS = tuple(f"{name}{verb} " for name in _FIELDS for verb in ("命中", "排除"))
_CATEGORY_SPLIT = re.compile(r"[/>|·,，、;；]+")


_FULL_WIDTH = re.compile("[\uff0e\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")
_FULL_WIDTH_TABLE = {c: c - 0xFEE0 for c in (0xFF0E, *range(0xFF10, 0xFF1A))} | {
    c: c - 0xFEE0 for c in (*range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B))
}


def normalize(text: str) -> str:
    """Fold text as keywords are stored: full-width letters, digits and . to ASCII; lower case.

    (Cheaper than NFKC, which costs more than the matching itself on a long article.)
    """
    if not text:
        return ""
    if _FULL_WIDTH.search(text):
        text = text.translate(_FULL_WIDTH_TABLE)
    return text.lower()


def repeat_factor(count: int) -> float:
    """1 for one match, then diminishing: 1 + ln(count), capped at REPEAT_CAP."""
    if count < len(_REPEAT):
        return _REPEAT[count]
    return min(1.0 + math.log(count), REPEAT_CAP)


_REPEAT = [1.0, 1.0] + [min(1.0 + math.log(n), REPEAT_CAP) for n in range(2, 64)]


@dataclass(frozen=True)
class Rule:
    """One compiled group or topic rule."""

    kind: str  # "group" | "topic"
    id: str
    label: str
    threshold: float
    index: int  # order of declaration, used to break score ties


@dataclass
class Tagging:
    """The tags of one pack: groups first by score, then topics by score."""

    groups: list[Tag] = field(default_factory=list)
    topics: list[Tag] = field(default_factory=list)

    @property
    def group_ids(self) -> list[str]:
        return [t.tag for t in self.groups]

    @property
    def topic_ids(self) -> list[str]:
        return [t.tag for t in self.topics]

    @property
    def tags(self) -> list[Tag]:
        """Groups then topics, as the store takes them."""
        return [*self.groups, *self.topics]

    def to_json(self) -> dict[str, Any]:
        reasons: dict[str, str] = {}
        for tag in self.tags:
            reasons.setdefault(tag.tag, tag.reason)
        return {"groups": self.group_ids, "topics": self.topic_ids, "reasons": reasons}


class Tagger:
    """Compiled rules. Build one with :func:`compile_rules`; it is immutable and thread-safe."""

    def __init__(
        self,
        rules: Sequence[Rule],
        terms: Mapping[str, Sequence[tuple[int, float]]],
        display: Mapping[str, str],
        categories: Mapping[str, Sequence[int]],
        *,
        title_weight: float,
        topic_share: float = 0.0,
        group_share: float = 0.0,
        engine: str = "auto",
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.title_weight = title_weight
        self.topic_share = topic_share
        self.group_share = group_share
        # term -> ((rule, weight, "shown(weight)", negative), ...). A zero weight is dropped here,
        # but the term stays in the automaton where it claims its span (骨干 hides the 干部
        # of 骨干部件).
        self._terms = {
            k: tuple((i, w, f"{display.get(k, k)}({w:.1f})", int(w < 0)) for i, w in v if w)
            for k, v in terms.items()
        }
        self._categories = {k: tuple(v) for k, v in categories.items()}
        self._by_kind_id = {(r.kind, r.id): r.index for r in self.rules}
        self.engine, self._find = _build_matcher(list(terms), engine)

    # -- public -----------------------------------------------------------------------------

    @property
    def keyword_count(self) -> int:
        """Distinct keywords and negatives in the compiled automaton."""
        return len(self._terms)

    def matches(self, text: str) -> list[str]:
        """Leftmost-longest keyword matches in ``text`` (folded by :func:`normalize`), in order."""
        return self._find(normalize(text)) if text else []

    def tag(
        self,
        title: str,
        summary: str = "",
        text: str = "",
        categories: Sequence[str] = (),
        hint_groups: Sequence[str] = (),
        hint_topics: Sequence[str] = (),
    ) -> Tagging:
        scores = [0.0] * len(self.rules)
        # rule -> [(2 * field + negative, "word(weight)", count), ...]
        evidence: dict[int, list[tuple[int, str, int]]] = {}
        forced: dict[int, list[str]] = {}

        title_n = normalize(title)
        summary_n = normalize(summary)
        body_n = normalize(text[:MAX_BODY_CHARS]) if text else ""
        # Feeds often repeat the summary as the article's lead: count those words once.
        if body_n and len(summary_n) >= 8:
            lead = summary_n.rstrip("….。 ")
            if lead in body_n[: len(lead) + 200]:
                summary_n = ""
        terms = self._terms
        for field_index, value, factor in (
            (0, title_n, self.title_weight),
            (2, summary_n, 1.0),
            (4, body_n, 1.0),
        ):
            if not value:
                continue
            for term, count in Counter(self._find(value)).items():
                scale = factor if count == 1 else factor * repeat_factor(count)  # diminishing
                for rule_index, weight, shown, negative in terms[term]:
                    scores[rule_index] += weight * scale
                    found = evidence.get(rule_index)
                    if found is None:
                        evidence[rule_index] = [(field_index + negative, shown, count)]
                    else:
                        found.append((field_index + negative, shown, count))

        for category in categories:
            for rule_index in self._lookup_category(category):
                forced.setdefault(rule_index, []).append(f"栏目: {str(category).strip()}")

        extra_topics: list[Tag] = []
        public_hint = False
        for kind, hints in (("group", hint_groups), ("topic", hint_topics)):
            for hint in hints:
                hint = str(hint).strip()
                if not hint:
                    continue
                if kind == "group" and hint == PUBLIC and ("group", PUBLIC) not in self._by_kind_id:
                    public_hint = True
                    continue
                indexes = self._lookup_hint(kind, hint)
                for rule_index in indexes:
                    forced.setdefault(rule_index, []).append("资源包标注")
                if not indexes and kind == "topic" and hint not in {t.tag for t in extra_topics}:
                    # Topic ids may be extended by a pack: keep an unknown topic as given.
                    extra_topics.append(Tag("topic", hint, 0.0, "资源包标注 (规则中无此主题)"))
                # an unknown group hint is dropped: group ids are fixed (models.GROUPS)

        groups: list[tuple[float, int, Tag]] = []
        topics: list[tuple[float, int, Tag]] = []
        rules = self.rules
        floors = {
            kind: share * max((scores[i] for i in evidence if rules[i].kind == kind), default=0.0)
            for kind, share in (("group", self.group_share), ("topic", self.topic_share))
        }
        for rule_index in {**evidence, **forced}:
            rule = rules[rule_index]
            score = scores[rule_index]
            why = forced.get(rule_index)
            if why:
                score = rule.threshold + max(score, 0.0)
            elif score < rule.threshold or score < floors[rule.kind]:
                continue
            reason = self._reason(rule, scores[rule_index], evidence.get(rule_index, ()), why)
            tag = Tag(rule.kind, rule.id, round(score, 2), reason)
            (groups if rule.kind == "group" else topics).append((-score, rule.index, tag))

        group_tags = [t for *_, t in sorted(groups, key=lambda x: x[:2])]
        if public_hint and all(t.tag != PUBLIC for t in group_tags):
            group_tags.append(Tag("group", PUBLIC, 0.0, "资源包标注"))
        if not any(t.tag in KEY_GROUPS for t in group_tags) and all(
            t.tag != PUBLIC for t in group_tags
        ):
            group_tags.append(Tag("group", PUBLIC, 0.0, "未达到任何重点人群的阈值，面向社会公众"))
        topic_tags = [t for *_, t in sorted(topics, key=lambda x: x[:2])] + extra_topics
        return Tagging(groups=group_tags, topics=topic_tags)

    # -- internals --------------------------------------------------------------------------

    def _reason(
        self,
        rule: Rule,
        score: float,
        evidence: Sequence[tuple[int, str, int]],
        forced: Sequence[str] | None,
    ) -> str:
        """'标题命中 农民(3.0); 正文命中 种植(1.0)×2; 栏目: 农技; 得分 8.0/阈值 2.0'."""
        pieces: list[str] = []
        if evidence:
            slots: list[list[str]] = [[], [], [], [], [], []]
            for slot, word, count in evidence:
                slots[slot].append(word if count == 1 else f"{word}×{count}")
            pieces = [_HEADS[i] + "、".join(words) for i, words in enumerate(slots) if words]
        if forced:
            pieces.extend(dict.fromkeys(forced))
        if evidence and forced:
            # passed outright: the tag's score is the threshold plus the keyword score, and the
            # reason says so, so the number beside it adds up
            keywords = max(score, 0.0)
            pieces.append(
                f"关键词得分 {keywords:.1f} + 阈值 {rule.threshold:.1f} (标注直接通过)"
                f" = {rule.threshold + keywords:.1f}"
            )
        elif evidence:
            pieces.append(f"得分 {score:.1f}/阈值 {rule.threshold:.1f}")
        return "; ".join(pieces)

    def _lookup_category(self, category: str) -> list[int]:
        found: list[int] = []
        whole = normalize(str(category)).strip()
        candidates = [whole, *(p.strip() for p in _CATEGORY_SPLIT.split(whole))]
        for candidate in candidates:
            for rule_index in self._categories.get(candidate, ()):
                if rule_index not in found:
                    found.append(rule_index)
        return found

    def _lookup_hint(self, kind: str, hint: str) -> list[int]:
        exact = self._by_kind_id.get((kind, hint))
        if exact is not None:
            return [exact]
        return [i for i in self._lookup_category(hint) if self.rules[i].kind == kind]


def _build_matcher(terms: list[str], engine: str) -> tuple[str, Callable[[str], list[str]]]:
    """(engine name, function text -> leftmost-longest matches) over all ``terms`` at once.

    ``engine``: "auto" (the Aho-Corasick DFA when ahocorasick-rs is installed, else the regex),
    "aho-corasick" or "regex".
    """
    if engine not in ("auto", "aho-corasick", "regex"):
        raise ValueError(f"unknown matching engine {engine!r}")
    if not terms:
        return "none", lambda text: []
    if engine != "regex" and ahocorasick_rs is not None:
        options: dict[str, Any] = {"matchkind": ahocorasick_rs.MatchKind.LeftmostLongest}
        if hasattr(ahocorasick_rs, "Implementation"):
            options["implementation"] = ahocorasick_rs.Implementation.DFA
        automaton = ahocorasick_rs.AhoCorasick(terms, **options)
        return "aho-corasick", automaton.find_matches_as_strings
    if engine == "aho-corasick":
        raise ValueError("engine 'aho-corasick' needs the ahocorasick-rs package")
    return "regex", _compile_trie(terms).findall


def _compile_trie(terms: Iterable[str]) -> re.Pattern[str]:
    """One regular expression over all terms, factored as a trie: ``农(?:民工?|机手?)``.

    Alternatives at each node are tried longest-first (an optional tail is greedy), so a match
    is the longest term starting at the leftmost position, like an Aho-Corasick automaton with
    leftmost-longest semantics. Factoring by prefix keeps the regex engine from re-testing the
    shared head of hundreds of terms at every position.
    """
    root: dict[str, Any] = {}
    for term in terms:
        node = root
        for char in term:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in node.items() if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a term ends here: the longer continuations are optional
            return body + "?" if len(branches) == 1 and len(body) == 1 else f"(?:{body})?"
        return body

    return re.compile(emit(root))


def compile_rules(
    groups: Mapping[str, RuleConfig],
    topics: Mapping[str, RuleConfig],
    *,
    threshold: float = 2.0,
    title_weight: float = 2.0,
    topic_share: float = 0.3,
    group_share: float = 0.2,
    engine: str = "auto",
) -> Tagger:
    """Compile group and topic rules (from config) into a :class:`Tagger`.

    Raises ValueError for a group id outside models.GROUPS or an empty keyword. ``engine`` is
    for tests and benchmarks (see :func:`_build_matcher`); the default picks the fastest.
    """
    rules: list[Rule] = []
    terms: dict[str, list[tuple[int, float]]] = {}
    display: dict[str, str] = {}
    categories: dict[str, list[int]] = {}

    def add_term(word: str, rule_index: int, weight: float) -> None:
        key = normalize(word).strip()
        if not key:
            raise ValueError(f"{rules[rule_index].kind} {rules[rule_index].id}: empty keyword")
        display.setdefault(key, word.strip())
        entries = terms.setdefault(key, [])
        # A word listed twice for one rule (keyword and negative) nets out.
        for i, (index, old) in enumerate(entries):
            if index == rule_index:
                entries[i] = (index, old + weight)
                return
        entries.append((rule_index, weight))

    for kind, table in (("group", groups), ("topic", topics)):
        for rule_id, config in table.items():
            if kind == "group" and rule_id not in GROUPS:
                raise ValueError(f"unknown group id {rule_id!r}; expected one of {list(GROUPS)}")
            index = len(rules)
            rule_threshold = config.threshold if config.threshold is not None else threshold
            rules.append(Rule(kind, rule_id, config.label or rule_id, rule_threshold, index))
            for word, weight in config.keywords.items():
                add_term(word, index, float(weight))
            for word, weight in config.negatives.items():
                add_term(word, index, -abs(float(weight)))
            for name in (rule_id, config.label or "", *config.categories):
                key = normalize(name).strip()
                if key and index not in categories.setdefault(key, []):
                    categories[key].append(index)

    # A zero-weight term stays in the pattern: it scores nothing but claims its span, which hides
    # the shorter terms inside it (骨干 hides the 干部 of 骨干部件).
    return Tagger(
        rules,
        terms,
        display,
        categories,
        title_weight=title_weight,
        topic_share=topic_share,
        group_share=group_share,
        engine=engine,
    )


def tagger_for(settings: Any, *, engine: str = "auto") -> Tagger:
    """The Tagger of loaded settings (config.Settings): its rules and its ``tagging:`` knobs.
    ``engine`` is for benchmarks (see :func:`_build_matcher`)."""
    options = settings.tagging
    return compile_rules(
        settings.groups,
        settings.topics,
        threshold=options.threshold,
        title_weight=options.title_weight,
        topic_share=options.topic_share,
        group_share=options.group_share,
        engine=engine,
    )


__all__ = [
    "MAX_BODY_CHARS",
    "Rule",
    "Tagger",
    "Tagging",
    "compile_rules",
    "normalize",
    "repeat_factor",
    "tagger_for",
]
