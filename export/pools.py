"""Value pools for the slots that home-assistant-intents leaves to the user's home.

The package ships no values for `{name}`, `{area}`, `{floor}` nor for its wildcard slots
(messages, search queries, list items, timer names). These pools supply realistic values,
composed from parts so that there are hundreds of them, and are split into disjoint
train / validation / test sets so that evaluation sees values never seen in training.

The parts are word lists kept as data in `export/words/*.yaml`; this module composes and
splits them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

WORDS_DIR = Path(__file__).resolve().parent / "words"


class WordListError(ValueError):
    """A word-list file is malformed; the message names the file and the list."""


def load_words(name: str, directory: Path = WORDS_DIR) -> dict[str, list[str]]:
    """A word-list file of `export/words/`: {list name: [word or phrase]}, in file order."""
    path = directory / name
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not doc:
        raise WordListError(f"{path}: expected lists of words under names")
    out: dict[str, list[str]] = {}
    for key, values in doc.items():
        if not (
            isinstance(values, list)
            and values
            and all(isinstance(v, str) and v and v == v.strip() for v in values)
        ):
            raise WordListError(
                f"{path}: {key}: expected a list of words or phrases (quote yes, no and numbers)"
            )
        repeated = sorted(v for v, n in Counter(values).items() if n > 1)
        if repeated:
            raise WordListError(f"{path}: {key}: repeated {repeated}")
        out[str(key)] = values
    return out


def _lists(name: str, *keys: str, directory: Path = WORDS_DIR) -> list[list[str]]:
    """The lists `keys` of one word-list file, in that order; the file holds no others."""
    words = load_words(name, directory)
    if set(words) != set(keys):
        raise WordListError(f"{directory / name}: expected the lists {', '.join(keys)}")
    return [words[k] for k in keys]


ROOMS, CORE_ROOMS, FLOORS, PEOPLE, AREA_SIDES, AREA_WORDS = _lists(
    "home.yaml", "rooms", "core_rooms", "floors", "people", "area_sides", "area_words"
)
DEVICE_NOUNS = load_words("device_nouns.yaml")
BRANDS, POSITIONS, PET_NAMES = _lists("devices.yaml", "brands", "positions", "pet_names")
PLACES, WEATHER_SERVICES, LIST_NOUNS, STORES = _lists(
    "entity_names.yaml", "places", "weather_services", "list_nouns", "stores"
)
MESSAGES, SEARCH_QUERIES, SHOPPING_ITEMS, TODO_ITEMS, TIMER_NAMES, ZONES, COMMAND_VERBS = _lists(
    "wildcards.yaml",
    "messages",
    "search_queries",
    "shopping_items",
    "todo_items",
    "timer_names",
    "zones",
    "command_verbs",
)
OOS_OPENERS, OOS_TOPICS, OOS_CHAT = _lists("out_of_scope.yaml", "openers", "topics", "chat")

# Every domain with device names: those composed from DEVICE_NOUNS, then two composed from
# their own lists (weather: places and services; to-do: list nouns, stores and people).
NAME_DOMAINS = (*DEVICE_NOUNS, "todo", "weather")

# Which device pool fills `{name}` for each intent (default: any device).
INTENT_NAME_DOMAINS: dict[str, list[str]] = {
    "HassLightSet": ["light"],
    "HassFanSetSpeed": ["fan"],
    "HassClimateGetTemperature": ["climate", "sensor"],
    "HassClimateSetTemperature": ["climate"],
    "HassClimateSetFanMode": ["climate", "fan"],
    "HassSetPosition": ["cover", "valve"],
    "HassVacuumStart": ["vacuum"],
    "HassVacuumReturnToBase": ["vacuum"],
    "HassVacuumCleanArea": ["vacuum"],
    "HassLawnMowerDock": ["lawn_mower"],
    "HassLawnMowerStartMowing": ["lawn_mower"],
    "HassListAddItem": ["todo"],
    "HassListCompleteItem": ["todo"],
    "HassListRemoveItem": ["todo"],
    "HassGetWeather": ["weather"],
    "HassMediaNext": ["media_player"],
    "HassMediaPrevious": ["media_player"],
    "HassMediaPause": ["media_player"],
    "HassMediaUnpause": ["media_player"],
    "HassMediaPlayerMute": ["media_player"],
    "HassMediaPlayerUnmute": ["media_player"],
    "HassMediaSearchAndPlay": ["media_player"],
    "HassSetVolume": ["media_player"],
    "HassSetVolumeRelative": ["media_player"],
}
ANY_DEVICE = [
    "light",
    "switch",
    "fan",
    "cover",
    "media_player",
    "lock",
    "sensor",
    "valve",
    "climate",
]

SPLITS = ("train", "val", "test")


def out_of_scope_sentences(pools: Pools, rng: random.Random, n: int) -> list[str]:
    """Sentences that are none of the intents, for training the model to be unsure on them:
    generic questions, chit-chat, and bare wildcard values ("abbey road") with no command."""
    bare = [v for k in ("message", "search_query", "todo_list_item") for v in pools.wildcards[k]]
    out: set[str] = set(OOS_CHAT)
    # Bounded: the phrase pools hold fewer distinct sentences than a large n asks for.
    for _ in range(20 * n):
        if len(out) >= n:
            break
        r = rng.random()
        if r < 0.6:
            out.add(f"{rng.choice(OOS_OPENERS)} {rng.choice(OOS_TOPICS)}")
        elif r < 0.8:
            out.add(rng.choice(bare))
        else:
            out.add(f"{rng.choice(OOS_TOPICS)} {rng.choice(OOS_TOPICS)}")
    return sorted(out)


@dataclass(frozen=True)
class Pools:
    """Values per slot list (and per device domain for names) for one split."""

    areas: list[str]
    floors: list[str]
    names: dict[str, list[str]]
    wildcards: dict[str, list[str]]


def _weather_names(places: list[str], services: list[str]) -> list[str]:
    """Weather entity names: "seattle", "seattle forecast", "accuweather"."""
    out = list(services)
    for place in places:
        out += [place, f"{place} weather", f"{place} forecast"]
    return sorted(set(out))


def _list_names(
    nouns: list[str], stores: list[str], people: list[str], rng: random.Random
) -> list[str]:
    """To-do list names: "chores", "costco", "emma's chores"."""
    out = set(nouns) | set(stores)
    for person in people:
        out.add(f"{person}'s {rng.choice(nouns)}")
    return sorted(out)


def _device_names(
    domain: str, rooms: list[str], people: list[str], brands: list[str], rng: random.Random
) -> list[str]:
    """Compose realistic device names for one domain: "kitchen lamp", "emma's fan", "hue strip"."""
    nouns = DEVICE_NOUNS[domain]
    names: set[str] = set()
    for noun in nouns:
        for room in rng.sample(rooms, min(4, len(rooms))):
            names.add(f"{room} {noun}")
        names.add(f"{rng.choice(people)}'s {noun}")
        names.add(f"{rng.choice(POSITIONS)} {noun}")
        names.add(f"{rng.choice(brands)} {noun}")
        names.add(f"{rng.choice(rooms)} {rng.choice(POSITIONS)} {noun}")
    if domain in ("vacuum", "lawn_mower"):
        names.update(rng.sample(PET_NAMES, 6))
        names.update(brands[:6])
    return sorted(names)


def _areas(rooms: list[str], people: list[str], rng: random.Random, n: int) -> list[str]:
    """The split's rooms plus composed ones ("emma's room", "upstairs den", "den closet")."""
    out = set(rooms)
    for _ in range(50 * (n + 1)):  # bounded, like out_of_scope_sentences; same output otherwise
        if len(out) >= len(rooms) + n:
            break
        r = rng.random()
        if r < 0.4:
            out.add(f"{rng.choice(people)}'s {rng.choice(AREA_WORDS)}")
        elif r < 0.8:
            out.add(f"{rng.choice(AREA_SIDES)} {rng.choice(rooms)}")
        else:
            out.add(f"{rng.choice(rooms)} {rng.choice(AREA_WORDS)}")
    return sorted(out)


def _commands(rooms: list[str], names: dict[str, list[str]], rng: random.Random) -> list[str]:
    """Spoken commands built from one split's devices and rooms."""
    devices = [n for d in ANY_DEVICE for n in names[d]]
    out = set()
    for _ in range(80):
        verb = rng.choice(COMMAND_VERBS)
        form = rng.random()
        if form < 0.5:
            out.add(f"{verb} the {rng.choice(devices)}")
        elif form < 0.75:
            out.add(f"{verb} the {rng.choice(rooms)} lights")
        else:
            out.add(f"{verb} the lights in the {rng.choice(rooms)}")
    return sorted(out)


def _split(values: list[str], rng: random.Random, fractions=(0.7, 0.15, 0.15)) -> list[list[str]]:
    """Shuffle and cut a list into disjoint train/val/test parts (each non-empty)."""
    vals = sorted(set(values))
    rng.shuffle(vals)
    n = len(vals)
    a = max(1, int(n * fractions[0]))
    b = max(a + 1, int(n * (fractions[0] + fractions[1])))
    return [vals[:a], vals[a:b], vals[b:] or vals[-1:]]


def make_pools(seed: int, more_train_areas: int = 0) -> dict[str, Pools]:
    """Disjoint value pools per split. People and brands are split as words, so test
    names contain words never seen in training; rooms are split as whole values."""
    rng = random.Random(seed)
    rooms = _split([r for r in ROOMS if r not in CORE_ROOMS], rng)
    rooms[0] = CORE_ROOMS + rooms[0]
    floors = _split(FLOORS, rng)
    people = _split(PEOPLE, rng)
    brands = _split(BRANDS, rng)
    wild_src = {
        "message": MESSAGES,
        "search_query": SEARCH_QUERIES,
        "shopping_list_item": SHOPPING_ITEMS,
        "todo_list_item": TODO_ITEMS,
        "timer_name": TIMER_NAMES,
        "zone": ZONES,
    }
    wild = {k: _split(v, rng) for k, v in wild_src.items()}
    # Their own random stream: the other pools stay what they were.
    own = random.Random(f"{seed}-names")
    places, services = _split(PLACES, own), _split(WEATHER_SERVICES, own)
    lists, stores = _split(LIST_NOUNS, own), _split(STORES, own)
    out: dict[str, Pools] = {}
    seen: set[str] = set()
    for i, split in enumerate(SPLITS):
        names: dict[str, list[str]] = {}
        for domain in NAME_DOMAINS:
            if domain == "weather":
                cand = _weather_names(places[i], services[i])
            elif domain == "todo":
                cand = _list_names(lists[i], stores[i], people[i], random.Random(f"{seed}-{split}"))
            else:
                cand = _device_names(domain, rooms[i], people[i], brands[i], rng)
            names[domain] = [n for n in cand if n not in seen] or cand
        for vals in names.values():
            seen.update(vals)
        wildcards = {k: v[i] for k, v in wild.items()}
        wildcards["timer_command"] = _commands(rooms[i], names, rng)
        areas = _areas(rooms[i], people[i], rng, 60 if split == "train" else 25)
        if split == "train" and more_train_areas:
            # Drawn from their own stream, so validation and test pools stay the same.
            more = _areas(rooms[i], people[i], random.Random(f"{seed}-areas"), more_train_areas)
            areas = sorted(set(areas) | set(more))
        out[split] = Pools(areas=areas, floors=floors[i], names=names, wildcards=wildcards)
    return out
