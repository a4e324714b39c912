"""群众点单 through the flow: the planner puts packs answering a county's orders first on that
county's channels (pure), and a real dispatch round against the sandbox marks an order
fulfilled when its linked or matching pack is delivered in its county; the answer page then
names the pack and its tracked link, and still no personal data."""

from __future__ import annotations

import sys
from pathlib import Path

from media_matrix import orders
from media_matrix.cli import cli
from media_matrix.cli.common import run_guarded
from media_matrix.planner import Demand, PlanPack, answers_demand, plan
from media_matrix.scheduling import order_demand

sys.path.insert(0, str(Path(__file__).parent))
from console_fixtures import make_console  # noqa: E402
from test_planner import SH, channel, pack, sh  # noqa: E402

CONTACT = "13655556666"


def test_a_matching_pack_goes_out_first_in_that_county_only():
    packs = [
        pack(1, topics=("health",)),  # equal in every way but the topic
        pack(2, topics=("agriculture",)),
    ]
    qingfeng = channel("qf", county="清丰县", per_slot=1)
    hualong = channel("hl", county="华龙区", per_slot=1)
    kwargs = {"now": sh(2024, 3, 2, 7), "days": 0.5, "tz": SH}
    assert [a.pack_id for a in plan(packs, [qingfeng, hualong], [], **kwargs)] == [1, 1]
    demand = {"清丰县": Demand(topics=frozenset({"agriculture"}))}
    got = plan(packs, [qingfeng, hualong], [], demand=demand, **kwargs)
    assert {a.channel: a.pack_id for a in got} == {"qf": 2, "hl": 1}
    assert "群众点单" in next(a.reason for a in got if a.channel == "qf")
    # a linked pack goes first even when it shares no topic; a fresher pack does not overtake
    linked = {"清丰县": Demand(pack_ids=frozenset({1}))}
    packs = [pack(1, topics=("health",), age_hours=48), pack(2, topics=("agriculture",))]
    got = plan(packs, [qingfeng], [], demand=linked, **kwargs)
    assert [a.pack_id for a in got] == [1]
    # linked packs come before packs that only share an ordered topic
    both = {"清丰县": Demand(pack_ids=frozenset({1}), topics=frozenset({"agriculture"}))}
    assert [a.pack_id for a in plan(packs, [qingfeng], [], demand=both, **kwargs)] == [1]
    assert answers_demand(PlanPack(5, topics=("water",)), Demand(pack_ids=frozenset({5})))
    assert not answers_demand(PlanPack(5, topics=("water",)), Demand(topics=frozenset({"fire"})))


def test_order_demand_per_county_from_the_store(tmp_path):
    con = make_console(tmp_path)
    raw = {"county": "清丰县", "township": "城关镇", "text": "小麦冬季怎么防冻"}
    first = orders.submit(con.settings, con.store, raw, source="web", by="t")
    second = orders.submit(con.settings, con.store, {**raw, "county": "范县"}, source="web", by="t")
    pack_id = con.store.packs_with_tags()[0]["id"]
    orders.act(con.store, second["id"], "link", by="t", pack_id=pack_id)
    declined = orders.submit(
        con.settings, con.store, {**raw, "text": "天气预报怎么看"}, source="web", by="t"
    )
    orders.act(con.store, declined["id"], "decline", by="t", note="重复")
    demand = order_demand(con.store)
    assert demand["清丰县"].topics == frozenset(first["topics"])
    assert "weather" not in demand["清丰县"].topics  # a declined order asks for nothing
    assert demand["范县"] == Demand(pack_ids=frozenset({pack_id}))


def test_dispatch_fulfils_orders_answered_in_their_county(tmp_path):
    con = make_console(tmp_path)
    settings, store = con.settings, con.store
    ask = {"county": "清丰县", "township": "马庄桥镇", "contact": CONTACT}
    matching = orders.submit(
        settings, store, {**ask, "text": "小麦冬季怎么防冻，农药怎么用"}, source="web", by="t"
    )
    elsewhere = orders.submit(  # no channel of 南乐县 in the default config: stays open
        settings,
        store,
        {**ask, "county": "南乐县", "text": "小麦冬季怎么防冻"},
        source="web",
        by="t",
    )
    best = orders.match(settings, store, matching["id"])[0].pack_id
    linked = orders.submit(settings, store, {**ask, "text": "老人怎么防诈骗"}, source="web", by="t")
    orders.act(store, linked["id"], "link", by="t", pack_id=best)
    assert orders.public_view(settings, store, matching["token"])["answer"] is None
    later = orders.submit(  # linked only after its answer went out
        settings, store, {**ask, "text": "上次讲座说的那个，还想再听听"}, source="web", by="t"
    )

    config = str(con.root / "config.yaml")
    assert run_guarded(cli, ["--config", config, "run", "--once"]) == 0

    got = store.get_request(matching["id"])
    assert got["status"] == "fulfilled", got
    delivery = store.get_delivery(got["delivery_id"])
    assert delivery["status"] == "delivered" and delivery["channel"] == "qingfeng-media-centre"
    delivered_topics = {p["id"]: p["topics"] for p in store.packs_with_tags()}[delivery["pack_id"]]
    assert set(delivered_topics) & set(got["topics"])
    assert got["fulfilled_at"] == delivery["delivered_at"]
    assert store.get_request(elsewhere["id"])["status"] == "open"
    answered = store.get_request(linked["id"])
    assert answered["status"] == "fulfilled"
    assert store.get_delivery(answered["delivery_id"])["pack_id"] == best
    history = [a["action"] for a in store.audit_log(subject=f"request:{matching['id']}")]
    assert history[0] == "request_fulfilled"

    view = orders.public_view(settings, store, matching["token"])
    assert view["status_label"] == "已答复"
    assert view["answer"]["title"] == store.get_pack(delivery["pack_id"]).title
    assert view["answer"]["url"].startswith(settings.public.base_url + "/s/")
    assert CONTACT not in repr(view) and "马庄桥镇" not in repr(view)
    # a second pass changes nothing (idempotent)
    assert orders.fulfil_delivered(settings, store) == []
    # a pack linked after it was delivered in the county answers its order at once
    assert later["topics"] == [] and store.get_request(later["id"])["status"] == "open"
    linked_now = orders.act(
        store, later["id"], "link", by="t", pack_id=delivery["pack_id"], settings=settings
    )
    assert linked_now["status"] == "fulfilled"
    assert linked_now["delivery_id"] == delivery["id"]
