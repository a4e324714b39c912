"""Tagging: the rules engine (pure), the rules loader, the `tag` dry-run command, and the quality
of the default rules on the held-out half of the labelled evaluation set."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from media_matrix.config import ConfigError, RuleConfig, Settings, load_rules, load_settings
from media_matrix.models import TOPICS
from media_matrix.tagging import MAX_BODY_CHARS, compile_rules, repeat_factor, tagger_for

REPO = Path(__file__).resolve().parent.parent


def rule(keywords=None, negatives=None, categories=(), threshold=None, label=None) -> RuleConfig:
    return RuleConfig(
        label=label,
        keywords=keywords or {},
        negatives=negatives or {},
        categories=list(categories),
        threshold=threshold,
    )


@pytest.fixture
def small():
    """A small rule set whose arithmetic is easy to follow."""
    return compile_rules(
        {
            "farmers": rule({"农民": 3, "种植": 1}, {"农民工": 3}, ["三农"], label="农民"),
            "workers": rule({"农民工": 3, "工人": 3}, label="产业工人"),
            "seniors": rule({"老人": 3}, label="老年人"),
            "officials": rule({"干部": 1}, threshold=4.0, label="领导干部和公务员"),
        },
        {
            "agriculture": rule({"种植": 1, "小麦": 2}, categories=["农技"], label="农业技术"),
            "digital": rule({"诈骗": 3, "AI": 2}, label="信息素养"),
            "health": rule({"急救": 2}, label="医疗健康"),
            "fire": rule({"火灾": 3, "消防": 3}, label="消防"),
        },
        topic_share=0.0,
    )


@pytest.fixture(scope="module")
def default():
    settings = Settings(path=REPO / "config.yaml")
    settings.groups, settings.topics = load_rules(settings)
    return tagger_for(settings)


# -- weights, fields, threshold ----------------------------------------------------------------


def test_title_counts_title_weight_times_summary_and_body(small):
    in_title = small.tag("种植", "")
    in_summary = small.tag("无关", "种植")
    in_body = small.tag("无关", "", "种植")
    assert in_title.topics[0].score == 2.0  # weight 1 x title_weight 2 -> passes 2.0
    assert in_summary.topic_ids == [] and in_body.topic_ids == []  # weight 1 < threshold 2


def test_weights_add_up_across_keywords_and_fields(small):
    result = small.tag("小麦种植", "种植小麦")
    agriculture = next(t for t in result.topics if t.tag == "agriculture")
    assert agriculture.score == (2 + 1) * 2 + (2 + 1)


def test_threshold_is_reached_not_exceeded(small):
    assert small.tag("无关", "小麦").topic_ids == ["agriculture"]  # 2.0 >= 2.0
    assert small.tag("无关", "", "种植").topic_ids == []  # 1.0 < 2.0


def test_per_rule_threshold_overrides_the_global_one(small):
    # 干部 weight 1 in the title scores 2.0: enough globally, not for officials (4.0)
    assert "officials" not in small.tag("干部").group_ids
    assert "officials" in small.tag("干部", "干部", "干部").group_ids  # 2 + 1 + 1 = 4


def test_body_repetition_has_diminishing_returns(small):
    once = small.tag("无关", "", "小麦")
    many = small.tag("无关", "", "小麦。" * 50)
    assert once.topics[0].score == 2.0
    assert many.topics[0].score == 2.0 * repeat_factor(50) == 6.0  # capped at 3x
    assert repeat_factor(1) == 1.0 and 1.0 < repeat_factor(2) < 2.0


def test_body_is_scanned_up_to_the_cap(small):
    padding = "。" * MAX_BODY_CHARS
    assert small.tag("无关", "", "诈骗" + padding).topic_ids == ["digital"]
    assert small.tag("无关", "", padding + "诈骗").topic_ids == []


def test_matching_folds_case_and_full_width(small):
    assert small.tag("ＡＩ换脸").topic_ids == ["digital"]
    assert small.tag("ai换脸").topic_ids == ["digital"]


# -- negatives and overlapping keywords --------------------------------------------------------


def test_the_farmer_inside_migrant_worker_does_not_fire(small):
    result = small.tag("农民工返岗复工体检")
    assert result.group_ids == ["workers"]
    assert "农民(" not in result.to_json()["reasons"]["workers"]


def test_a_negative_subtracts_even_next_to_a_true_keyword(small):
    # 农民 (3 x 2) and 农民工 (-3 x 2) in the title: farmers nets 0
    result = small.tag("农民和农民工")
    assert result.group_ids == ["workers"]


def test_a_negative_alone_claims_its_span():
    tagger = compile_rules({"farmers": rule({"农民": 3}, {"农民工": 2})}, {})
    result = tagger.tag("农民工")  # 农民工 is in no keyword list, only a negative
    assert result.group_ids == ["public"]
    assert tagger.matches("农民工和农民") == ["农民工", "农民"]


def test_zero_weight_term_hides_shorter_terms_inside_it():
    tagger = compile_rules({"officials": rule({"干部": 3}, {"骨干": 0})}, {})
    assert tagger.tag("技术骨干部分来自职业院校").group_ids == ["public"]
    assert tagger.tag("领导干部培训").group_ids == ["officials"]


def test_default_rules_hard_negatives(default):
    assert default.tag("城市农民工技能培训").group_ids == ["workers"]
    assert "seniors" not in default.tag("“老年”机器人退役后去哪儿").group_ids
    assert "workers" not in default.tag("退休科技工作者讲解地震知识").group_ids
    assert "fire" not in default.tag("网络安全的“防火墙”是什么").topic_ids


# -- categories, hints, multi-label, public ----------------------------------------------------


def test_category_maps_straight_to_the_tag(small):
    result = small.tag("一篇没有关键词的文章", categories=["农技"])
    assert result.topic_ids == ["agriculture"]
    tag = result.topics[0]
    assert tag.score == 2.0 and tag.reason == "栏目: 农技"


def test_category_matches_id_label_and_path_parts(small):
    assert small.tag("无关", categories=["科普中国/农技"]).topic_ids == ["agriculture"]
    assert small.tag("无关", categories=["消防"]).topic_ids == ["fire"]  # the label
    assert small.tag("无关", categories=["fire"]).topic_ids == ["fire"]  # the id
    assert small.tag("无关", categories=["三农"]).group_ids == ["farmers"]
    assert small.tag("无关", categories=["娱乐"]).topic_ids == []


def test_hints_are_accepted_as_tags(small):
    result = small.tag("无关", hint_groups=["seniors", "nobody"], hint_topics=["医疗健康", "space"])
    assert result.group_ids == ["seniors"]  # an unknown group id is dropped
    assert result.topic_ids == ["health", "space"]  # by label; unknown topic ids may extend
    assert result.groups[0].reason == "资源包标注"
    assert small.tag("无关", hint_groups=["public"]).group_ids == ["public"]


def test_forced_tag_beats_a_negative(small):
    result = small.tag("农民工", hint_groups=["farmers"])
    assert set(result.group_ids) == {"farmers", "workers"}


def test_multi_label(small):
    result = small.tag("农村老人和农民防范诈骗", "火灾急救")
    assert set(result.group_ids) == {"farmers", "seniors"}
    assert set(result.topic_ids) == {"digital", "fire", "health"}
    assert result.groups[0].score >= result.groups[-1].score  # by score


def test_public_when_no_key_group_passes(small):
    result = small.tag("流感疫苗接种")
    assert result.group_ids == ["public"]
    assert result.groups[0].reason
    assert "public" not in small.tag("农民").group_ids


def test_topic_share_drops_incidental_topics():
    groups = {"farmers": rule({"农民": 3})}
    topics = {"fire": rule({"火灾": 3, "消防": 3}), "health": rule({"急救": 2})}
    title, summary = "消防火灾", "急救"  # fire 12, health 2
    assert compile_rules(groups, topics, topic_share=0.0).tag(title, summary).topic_ids == [
        "fire",
        "health",
    ]
    assert compile_rules(groups, topics, topic_share=0.3).tag(title, summary).topic_ids == ["fire"]


# -- reasons and output ------------------------------------------------------------------------


def test_reason_lists_keywords_fields_weights_and_repeats(small):
    result = small.tag("农民", "", "种植，种植")
    reason = result.to_json()["reasons"]["farmers"]
    assert reason == "标题命中 农民(3.0); 正文命中 种植(1.0)×2; 得分 7.7/阈值 2.0"
    assert result.groups[0].origin == "rule" and not result.groups[0].removed


def test_reason_shows_negatives_and_categories(small):
    reason = small.tag("农民", "农民工", categories=["三农"]).to_json()["reasons"]["farmers"]
    assert reason.startswith("标题命中 农民(3.0); 摘要排除 农民工(-3.0); 栏目: 三农")


def test_to_json_shape(small):
    data = small.tag("农民种植小麦").to_json()
    assert data == {
        "groups": ["farmers"],
        "topics": ["agriculture"],
        "reasons": {
            "farmers": data["reasons"]["farmers"],
            "agriculture": data["reasons"]["agriculture"],
        },
    }
    tags = small.tag("农民种植小麦").tags
    assert [(t.kind, t.tag) for t in tags] == [("group", "farmers"), ("topic", "agriculture")]


def test_unknown_group_id_is_rejected():
    with pytest.raises(ValueError, match="unknown group id"):
        compile_rules({"students": rule({"学生": 3})}, {})


def test_engines_agree(default):
    pytest.importorskip("ahocorasick_rs")
    settings = Settings(path=REPO / "config.yaml")
    groups, topics = load_rules(settings)
    regex = compile_rules(groups, topics, engine="regex")
    automaton = compile_rules(groups, topics, engine="aho-corasick")
    assert automaton.engine == "aho-corasick" and regex.engine == "regex"
    for line in (REPO / "tests" / "data" / "tagging_eval.jsonl").read_text("utf-8").splitlines():
        item = json.loads(line)
        text = item["title"] + "。" + item["summary"]
        assert regex.matches(text) == automaton.matches(text)
        assert regex.tag(text).to_json() == automaton.tag(text).to_json()


# -- rules loading -----------------------------------------------------------------------------


def write_config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("database: var/test.db\n" + text, encoding="utf-8")
    return path


def test_default_rules_cover_every_group_and_topic(tmp_path):
    settings = load_settings(write_config(tmp_path))
    assert set(settings.groups) == {"youth", "farmers", "workers", "seniors", "officials"}
    assert set(settings.topics) >= set(TOPICS)
    for rule_config in (*settings.groups.values(), *settings.topics.values()):
        assert rule_config.label and len(rule_config.keywords) >= 20


def test_inline_rule_extends_the_default_one(tmp_path):
    path = write_config(
        tmp_path,
        "groups:\n  farmers:\n    keywords: {种粮: 2, 农民: 1}\n    categories: [新栏目]\n"
        "topics:\n  astronomy:\n    label: 天文\n    keywords: {天文: 3}\n",
    )
    settings = load_settings(path)
    farmers = settings.groups["farmers"]
    assert farmers.keywords["种粮"] == 2 and farmers.keywords["农民"] == 1  # inline wins
    assert farmers.keywords["农户"] == 3  # the default keywords stay
    assert "新栏目" in farmers.categories and "三农" in farmers.categories
    assert settings.topics["astronomy"].label == "天文"  # a new topic id
    assert "health" in settings.topics


def test_inline_rule_can_replace_the_default_one(tmp_path):
    path = write_config(
        tmp_path, "groups:\n  farmers:\n    replace: true\n    keywords: {种粮: 2}\n"
    )
    assert load_settings(path).groups["farmers"].keywords == {"种粮": 2.0}


def test_rules_file_relative_to_the_config(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mine.yaml").write_text(
        "groups:\n  youth:\n    keywords: {学生: 3}\ntopics:\n  space:\n    keywords: {火箭: 3}\n",
        encoding="utf-8",
    )
    settings = load_settings(write_config(tmp_path, "tagging: {rules_file: rules/mine.yaml}\n"))
    assert list(settings.groups) == ["youth"] and list(settings.topics) == ["space"]
    assert tagger_for(settings).tag("火箭发射").topic_ids == ["space"]


@pytest.mark.parametrize(
    ("rules_text", "expected"),
    [
        ("groups:\n  students:\n    keywords: {学生: 3}\n", r"mine\.yaml: groups: unknown group"),
        (
            "topics:\n  space:\n    keywords: {火箭: heavy}\n",
            r"mine\.yaml: topics\.space\.keywords",
        ),
        ("topics:\n  space:\n    kewords: {火箭: 3}\n", r"mine\.yaml: topics\.space\.kewords"),
        ("groups: [1, 2\n", r"mine\.yaml: not valid YAML"),
    ],
)
def test_rules_file_errors_name_file_and_key(tmp_path, rules_text, expected):
    (tmp_path / "mine.yaml").write_text(rules_text, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_settings(write_config(tmp_path, "tagging: {rules_file: mine.yaml}\n"))


def test_missing_rules_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"tagging\.rules_file: cannot read .*nope\.yaml"):
        load_settings(write_config(tmp_path, "tagging: {rules_file: nope.yaml}\n"))


def test_inline_group_rule_must_use_a_known_id(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.yaml: groups: unknown group id 'students'"):
        load_settings(write_config(tmp_path, "groups:\n  students:\n    keywords: {学生: 3}\n"))


# -- the `tag` command -------------------------------------------------------------------------


def test_tag_command_json_lines_in_order(tmp_path):
    from media_matrix.cli import cli

    config = write_config(tmp_path)
    lines = [
        {"title": "农村老人防范电信诈骗", "summary": "民警讲解常见骗局"},
        {
            "title": "新品发布",
            "content": "<p>职工<b>技能</b>大赛&nbsp;开幕</p><script>老人</script>",
        },
        {"title": "量子计算新进展"},
    ]
    stdin = "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n"
    result = CliRunner().invoke(cli, ["--config", str(config), "tag"], input=stdin.encode("utf-8"))
    assert result.exit_code == 0, result.output
    out = [json.loads(x) for x in result.stdout_bytes.decode("utf-8").splitlines()]
    assert len(out) == 3
    assert set(out[0]["groups"]) == {"farmers", "seniors"} and "digital" in out[0]["topics"]
    assert out[1]["groups"] == ["workers"]  # tags stripped, the script dropped
    assert out[2]["groups"] == ["public"] and set(out[2]) == {"groups", "topics", "reasons"}
    assert "标题命中 农村(3.0)" in out[0]["reasons"]["farmers"]
    assert not (tmp_path / "var").exists()  # no database


def test_tag_command_bad_line_names_its_number(tmp_path):
    config = write_config(tmp_path)
    stdin = '{"title": "农民"}\n{"title": 3}\n{"title": "老人"}\n'
    proc = subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), "tag"],
        input=stdin.encode("utf-8"),
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "line 2" in proc.stderr.decode("utf-8")
    assert json.loads(proc.stdout.decode("utf-8").splitlines()[0])["groups"] == ["farmers"]
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", '{"summary": "没有标题"}'])
def test_tag_command_rejects_bad_input(tmp_path, bad):
    from media_matrix.cli import cli

    config = write_config(tmp_path)
    result = CliRunner().invoke(cli, ["--config", str(config), "tag"], input=bad + "\n")
    assert result.exit_code == 2
    assert "line 1" in result.output


# -- quality of the default rules --------------------------------------------------------------


def _bench():
    spec = importlib.util.spec_from_file_location("bench_tagging", REPO / "bench" / "tagging.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_set_is_balanced():
    bench = _bench()
    items = bench.load_eval()
    assert len(items) >= 170 and len({i["id"] for i in items}) == len(items)
    for split in ("tune", "heldout"):
        part = [i for i in items if i["split"] == split]
        for group in ("youth", "farmers", "workers", "seniors", "officials", "public"):
            assert sum(group in i["groups"] for i in part) >= 10, (split, group)
        for topic in TOPICS:
            assert sum(topic in i["topics"] for i in part) >= 5, (split, topic)
        assert sum(len(i["groups"]) > 1 for i in part) >= 4, split


def test_heldout_quality_meets_the_targets():
    bench = _bench()
    items = [i for i in bench.load_eval() if i["split"] == "heldout"]
    report = bench.evaluate(bench.default_tagger(), items)
    assert bench.check_targets(report) == []
