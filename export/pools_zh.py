"""Value pools for Chinese (zh-CN) homes: rooms, floors, device names, people, lists, timers.

The word lists are data in `export/words/zh-CN/*.yaml`, written for Chinese homes (not a
translation of the English lists); this module composes them the way Chinese households
name things ("客厅吸顶灯", "主卧空调", "妈妈的台灯", "小米台灯", "二楼客厅") and cuts them
into disjoint train / validation / test parts, like `export.pools` does for English.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from export.pools import WORDS_DIR, Pools, _lists, _split, load_words

ZH_WORDS = WORDS_DIR / "zh-CN"

ROOMS, CORE_ROOMS, CORE_FLOORS, FLOORS, PEOPLE, AREA_PREFIXES, AREA_WORDS = _lists(
    "home.yaml",
    "rooms",
    "core_rooms",
    "core_floors",
    "floors",
    "people",
    "area_prefixes",
    "area_words",
    directory=ZH_WORDS,
)
DEVICE_NOUNS = load_words("device_nouns.yaml", ZH_WORDS)
BRANDS, POSITIONS, PET_NAMES, SCENES, SCRIPTS = _lists(
    "devices.yaml", "brands", "positions", "pet_names", "scenes", "scripts", directory=ZH_WORDS
)
PLACES, LIST_NOUNS, STORES = _lists(
    "entity_names.yaml", "places", "list_nouns", "stores", directory=ZH_WORDS
)
MESSAGES, SHOPPING_ITEMS, TODO_ITEMS, TIMER_NAMES, ZONES, COMMAND_VERBS = _lists(
    "wildcards.yaml",
    "messages",
    "shopping_items",
    "todo_items",
    "timer_names",
    "zones",
    "command_verbs",
    directory=ZH_WORDS,
)
OOS_OPENERS, OOS_TOPICS, OOS_CHAT = _lists(
    "out_of_scope.yaml", "openers", "topics", "chat", directory=ZH_WORDS
)
# Values added to the training part only (the split's validation and test values unchanged).
TRAIN_ONLY_TODO, TRAIN_ONLY_TIMERS, TRAIN_ONLY_SHOPPING, TRAIN_ONLY_PLACES = _lists(
    "train_only.yaml", "todo_items", "timer_names", "shopping_items", "places", directory=ZH_WORDS
)

# Every domain with names: composed device domains, then those with lists of their own.
NAME_DOMAINS = (*DEVICE_NOUNS, "scene", "script", "person", "weather", "todo")
# {name} in a template block that requires no domain.
ANY_DEVICE = (
    "light",
    "switch",
    "fan",
    "cover",
    "media_player",
    "lock",
    "sensor",
    "valve",
    "climate",
)


# Devices that 打开/关闭 turn on and off (or open and close). Not locks: the package's
# templates lock them with 关上 and unlock them with 打开 (HassTurnOn / HassTurnOff).
ON_OFF_DEVICES = ("light", "switch", "fan", "cover", "media_player", "valve", "climate")

# Which pools fill {name} for a template whose block requires no domain (the extra templates).
INTENT_NAME_DOMAINS: dict[str, tuple[str, ...]] = {
    "HassTurnOn": ON_OFF_DEVICES,
    "HassTurnOff": ON_OFF_DEVICES,
    "HassGetState": (*ANY_DEVICE, "binary_sensor", "person"),
    "HassLightSet": ("light",),
    "HassFanSetSpeed": ("fan",),
    "HassClimateGetTemperature": ("climate", "sensor"),
    "HassClimateSetTemperature": ("climate",),
    "HassSetPosition": ("cover", "valve"),
    "HassVacuumStart": ("vacuum",),
    "HassVacuumReturnToBase": ("vacuum",),
    "HassVacuumCleanArea": ("vacuum",),
    "HassLawnMowerDock": ("lawn_mower",),
    "HassLawnMowerStartMowing": ("lawn_mower",),
    "HassListAddItem": ("todo",),
    "HassListCompleteItem": ("todo",),
    "HassListRemoveItem": ("todo",),
    "HassGetWeather": ("weather",),
    "HassMediaNext": ("media_player",),
    "HassMediaPrevious": ("media_player",),
    "HassMediaPause": ("media_player",),
    "HassMediaUnpause": ("media_player",),
    "HassMediaPlayerMute": ("media_player",),
    "HassMediaPlayerUnmute": ("media_player",),
    "HassSetVolume": ("media_player",),
    "HassSetVolumeRelative": ("media_player",),
}


def name_domains(intent: str, context: Sequence[str]) -> Sequence[str]:
    """The name pools for {name} in a template block: the domains the block requires (those
    that have names here), else the intent's usual domains, else any device."""
    return (
        [d for d in context if d in NAME_DOMAINS] or INTENT_NAME_DOMAINS.get(intent) or ANY_DEVICE
    )


def _device_names(
    domain: str,
    rooms: list[str],
    people: list[str],
    brands: list[str],
    pets: list[str],
    rng: random.Random,
) -> list[str]:
    """Names for one domain: "客厅吸顶灯", "妈妈的台灯", "小米台灯", "沙发落地灯"."""
    names: set[str] = set()
    for noun in DEVICE_NOUNS[domain]:
        for room in rng.sample(rooms, min(4, len(rooms))):
            names.add(f"{room}{noun}")
        names.add(f"{rng.choice(people)}的{noun}")
        names.add(f"{rng.choice(brands)}{noun}")
        position = rng.choice(POSITIONS)
        room = rng.choice(rooms)
        if position not in noun:  # no "床头床头灯"
            names.add(f"{position}{noun}")
            names.add(f"{room}{position}{noun}")
    if domain in ("vacuum", "lawn_mower"):
        names.update(rng.sample(pets, min(4, len(pets))))
    return sorted(names)


def _list_names(
    nouns: list[str], stores: list[str], people: list[str], rng: random.Random
) -> list[str]:
    """To-do list names: "家务清单", "宜家清单", "妈妈的待办"."""
    out = set(nouns) | {f"{s}清单" for s in stores}
    for person in people:
        out.add(f"{person}的{rng.choice(nouns)}")
    return sorted(out)


def _areas(
    rooms: list[str], people: list[str], rng: random.Random, n: int, known: set[str]
) -> list[str]:
    """The split's rooms plus `n` composed ones ("婷婷的房间", "南阳台", "二楼客厅"), none
    of them in `known` (another split's areas)."""
    out = set(rooms)
    for _ in range(50 * (n + 1)):
        if len(out) >= len(rooms) + n:
            break
        if rng.random() < 0.4:
            area = f"{rng.choice(people)}的{rng.choice(AREA_WORDS)}"
        else:
            prefix, room = rng.choice(AREA_PREFIXES), rng.choice(rooms)
            if prefix[-1] in room or room[0] in "东南西北大小前后主次":  # no "北北卧", "大小书房"
                continue
            area = f"{prefix}{room}"
        if area not in known:
            out.add(area)
    return sorted(out)


def _commands(rooms: list[str], names: dict[str, list[str]], rng: random.Random) -> list[str]:
    """Spoken commands a timer runs when it ends ("关掉客厅的灯", "把主卧空调关上")."""
    devices = [n for d in ANY_DEVICE for n in names[d]]
    out = set()
    for _ in range(80):
        verb = rng.choice(COMMAND_VERBS)
        form = rng.random()
        if form < 0.5:
            out.add(f"{verb}{rng.choice(devices)}")
        elif form < 0.75:
            out.add(f"{verb}{rng.choice(rooms)}的灯")
        else:
            out.add(f"把{rng.choice(devices)}{verb}")
    return sorted(out)


def _train_only(parts: list[list[str]], more: list[str]) -> list[list[str]]:
    """The split's parts with `more` added to the training part (none of another part's)."""
    held_out = set(parts[1]) | set(parts[2])
    return [sorted(set(parts[0]) | {v for v in more if v not in held_out}), *parts[1:]]


def make_pools(seed: int, more_train_areas: int = 0) -> dict[str, Pools]:
    """Disjoint value pools per split. People, brands, pets, scenes and scripts are split as
    words, so held-out names contain words never seen in training; rooms and floors are split
    as whole values (the rooms and floors nearly every home has always train). The values of
    `train_only.yaml` join the training part after the split."""
    rng = random.Random(f"zh-CN-{seed}")
    rooms = _split([r for r in ROOMS if r not in CORE_ROOMS], rng)
    rooms[0] = CORE_ROOMS + rooms[0]
    floors = _split([f for f in FLOORS if f not in CORE_FLOORS], rng)
    floors[0] = CORE_FLOORS + floors[0]
    people = _split(PEOPLE, rng)
    brands = _split(BRANDS, rng)
    pets = _split(PET_NAMES, rng)
    scenes, scripts = _split(SCENES, rng), _split(SCRIPTS, rng)
    places, lists, stores = _split(PLACES, rng), _split(LIST_NOUNS, rng), _split(STORES, rng)
    wild_src = {
        "message": MESSAGES,
        "shopping_list_item": SHOPPING_ITEMS,
        "todo_list_item": TODO_ITEMS,
        "timer_name": TIMER_NAMES,
        "zone": ZONES,
    }
    wild = {k: _split(v, rng) for k, v in wild_src.items()}
    places = _train_only(places, TRAIN_ONLY_PLACES)
    for key, values in (
        ("todo_list_item", TRAIN_ONLY_TODO),
        ("timer_name", TRAIN_ONLY_TIMERS),
        ("shopping_list_item", TRAIN_ONLY_SHOPPING),
    ):
        wild[key] = _train_only(wild[key], values)
    out: dict[str, Pools] = {}
    seen_names: set[str] = set()
    seen_areas: set[str] = set()
    for i, split in enumerate(("train", "val", "test")):
        names: dict[str, list[str]] = {}
        for domain in NAME_DOMAINS:
            if domain in DEVICE_NOUNS:
                cand = _device_names(domain, rooms[i], people[i], brands[i], pets[i], rng)
            elif domain == "todo":
                cand = _list_names(lists[i], stores[i], people[i], rng)
            else:
                cand = {
                    "scene": scenes,
                    "script": scripts,
                    "person": people,
                    "weather": places,
                }[domain][i]
            names[domain] = [n for n in cand if n not in seen_names] or cand
        for vals in names.values():
            seen_names.update(vals)
        wildcards = {k: v[i] for k, v in wild.items()}
        wildcards["timer_command"] = _commands(rooms[i], names, rng)
        areas = _areas(rooms[i], people[i], rng, 40 if split == "train" else 20, seen_areas)
        if split == "train" and more_train_areas:
            more = random.Random(f"zh-CN-{seed}-areas")
            areas = sorted(
                set(areas) | set(_areas(rooms[i], people[i], more, more_train_areas, set()))
            )
        seen_areas.update(areas)
        out[split] = Pools(areas=areas, floors=floors[i], names=names, wildcards=wildcards)
    return out


def out_of_scope_sentences(pools: Pools, rng: random.Random, n: int) -> list[str]:
    """Chinese sentences that are none of the intents: questions about other things, chit-chat,
    requests for services the home does not offer, and bare list items or messages."""
    bare = [
        v for k in ("message", "todo_list_item", "shopping_list_item") for v in pools.wildcards[k]
    ]
    out: set[str] = set(OOS_CHAT)
    for _ in range(20 * n):
        if len(out) >= n:
            break
        r = rng.random()
        if r < 0.55:
            out.add(f"{rng.choice(OOS_OPENERS)}{rng.choice(OOS_TOPICS)}")
        elif r < 0.75:
            out.add(rng.choice(bare))
        elif r < 0.9:
            out.add(
                f"{rng.choice(OOS_TOPICS)}{rng.choice(('怎么样', '是什么', '有哪些', '好不好'))}"
            )
        else:
            out.add(f"{rng.choice(OOS_TOPICS)}和{rng.choice(OOS_TOPICS)}")
    return sorted(out)


# (what a value ends with, what the template puts right after it, past an optional 的):
# "吸顶灯的灯", "插座开关", "回家模式模式" read wrong though a template produces them.
_DOUBLED = (
    (("灯", "灯带", "灯光"), ("灯", "吸顶灯", "筒灯", "射灯", "台灯", "床头灯")),
    (("开关", "插座", "电源", "排插"), ("开关", "电源", "插座", "通断器")),
    (("锁", "门"), ("锁",)),
    (("扇",), ("风扇", "电扇", "吊扇")),
    (("模式", "场景"), ("模式", "场景")),
    (("割草机", "草坪机", "割草机器人"), ("割草机",)),
)
_REPEAT = re.compile(r"([\u4e00-\u9fff]{2})\1")  # "帮我帮我"
# 两 counts things: a measure word or a unit follows it ("两分钟", "两度", "两个小时"); a bare
# number is 二 ("音量调到二", "百分之二").
_LIANG_BEFORE = "个分秒小钟度摄华天次档级倍格盏台周"
# A percentage in Chinese numerals with a % sign ("九十%"), 的 right before the closing verb
# ("把窗帘的打开", "扫地机的开始打扫").
_ODD = re.compile(
    r"[零一二三四五六七八九十百两点]%|的(?:打开|开启|开|关闭|关掉|关了|关|拉开|关上|上锁|锁上|解锁"
    r"|暂停|停止|恢复|继续|静音|启动|执行|运行|开始|开始打扫|开始清扫|开始清洁|去扫地|去打扫"
    r"|回基站|回充电座|回去充电|返回|回充|开始工作|开始割草)(?:播放|一下|基站|充电座|底座)?$"
)


def odd_sentence(text: str, spans: Sequence[Any]) -> bool:
    """Whether a generated sentence reads wrong: a floor followed by 楼/层 ("一楼楼"), a value
    whose last character the template repeats ("灯灯", "的的"), a device word twice
    ("吸顶灯的灯"), a name or area left hanging on 的 ("打开客厅窗帘的"), 的 before the
    closing verb ("把窗帘的打开"), a percentage both spelt 百分之 and written % or in Chinese
    numerals with %, 两 as a bare number ("百分之两", "音量调到两"), or a phrase said twice."""
    if ("百分之" in text and "%" in text) or _REPEAT.search(text) or _ODD.search(text):
        return True
    for sp in spans:
        value, after = text[sp.start : sp.end], text[sp.end :]
        if value.startswith("两") and (
            text.endswith("百分之", 0, sp.start)
            or (value == "两" and not (after and after[0] in _LIANG_BEFORE))
        ):
            return True
        if not value or not after:
            continue
        if after == "的" and sp.slot in ("name", "area", "floor"):  # "打开客厅窗帘的"
            return True
        if after[0] == value[-1] or (sp.slot == "floor" and after[0] in "楼层"):
            return True
        rest = after[1:] if after[0] == "的" else after
        if any(value.endswith(e) and rest.startswith(s) for e, s in _DOUBLED):
            return True
    return False
