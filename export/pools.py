"""Value pools for the slots that home-assistant-intents leaves to the user's home.

The package ships no values for `{name}`, `{area}`, `{floor}` nor for its wildcard slots
(messages, search queries, list items, timer names). These pools supply realistic values,
composed from parts so that there are hundreds of them, and are split into disjoint
train / validation / test sets so that evaluation sees values never seen in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ROOMS = [
    "kitchen",
    "living room",
    "bedroom",
    "master bedroom",
    "guest bedroom",
    "bathroom",
    "guest bathroom",
    "master bathroom",
    "office",
    "home office",
    "study",
    "den",
    "nursery",
    "laundry room",
    "hallway",
    "attic",
    "basement",
    "garage",
    "patio",
    "porch",
    "front porch",
    "back porch",
    "garden",
    "backyard",
    "front yard",
    "driveway",
    "dining room",
    "family room",
    "playroom",
    "mudroom",
    "pantry",
    "closet",
    "walk-in closet",
    "sunroom",
    "library",
    "gym",
    "home theater",
    "media room",
    "workshop",
    "shed",
    "greenhouse",
    "balcony",
    "terrace",
    "loft",
    "entryway",
    "foyer",
    "spare room",
    "guest room",
    "game room",
    "wine cellar",
    "utility room",
    "boiler room",
    "stairwell",
    "landing",
    "lounge",
    "kids room",
    "upstairs hallway",
    "downstairs bathroom",
    "powder room",
    "craft room",
    "music room",
    "sewing room",
    "pool house",
    "deck",
    "courtyard",
    "carport",
    "rec room",
    "bonus room",
    "en suite",
    "cellar",
    "breakfast nook",
    "reading nook",
    "studio",
    "guest house",
    "cabin",
    "lanai",
    "veranda",
    "conservatory",
    "hall",
    "back garden",
    "front garden",
    "side yard",
    "man cave",
    "she shed",
    "server room",
    "gallery",
]
PEOPLE = [
    "emma",
    "liam",
    "olivia",
    "noah",
    "ava",
    "mia",
    "lucas",
    "sophia",
    "jack",
    "zoe",
    "grandma",
    "grandpa",
    "mom",
    "dad",
    "ethan",
    "chloe",
    "maya",
    "leo",
    "isla",
    "oscar",
    "ruby",
    "finn",
    "nora",
    "theo",
    "hannah",
    "priya",
    "diego",
    "yuki",
    "fatima",
    "omar",
    "ingrid",
    "sven",
    "aisha",
    "kofi",
    "mateo",
    "lena",
    "hugo",
    "elsa",
    "tariq",
    "wei",
]
FLOORS = [
    "first floor",
    "second floor",
    "third floor",
    "ground floor",
    "upstairs",
    "downstairs",
    "main floor",
    "top floor",
    "lower level",
    "upper level",
    "basement level",
    "attic floor",
    "mezzanine",
    "level one",
    "level two",
    "level three",
    "garden level",
    "penthouse",
    "lower floor",
    "upper floor",
    "first story",
    "second story",
    "ground level",
    "loft level",
    "floor one",
    "floor two",
    "floor three",
    "main level",
    "lower ground",
    "split level",
]
BRANDS = [
    "hue",
    "sonos",
    "roku",
    "nest",
    "ecobee",
    "dyson",
    "roomba",
    "philips",
    "lifx",
    "kasa",
    "wemo",
    "govee",
    "nanoleaf",
    "echo",
    "shield",
    "tado",
    "netatmo",
    "shelly",
    "aqara",
    "ikea",
    "tradfri",
    "sengled",
    "wyze",
    "arlo",
    "ring",
    "eufy",
    "bose",
    "denon",
    "yamaha",
    "samsung",
    "lg",
    "vizio",
    "apple tv",
    "chromecast",
    "fire tv",
    "honeywell",
    "mysa",
    "meross",
    "tuya",
    "sonoff",
    "zigbee",
    "husqvarna",
    "worx",
    "neato",
    "roborock",
    "dreame",
    "miele",
    "bosch",
    "breville",
    "keurig",
]
DEVICE_NOUNS: dict[str, list[str]] = {
    "light": [
        "lamp",
        "light",
        "lights",
        "light strip",
        "chandelier",
        "sconce",
        "ceiling light",
        "floor lamp",
        "desk lamp",
        "reading lamp",
        "pendant",
        "spotlights",
        "night light",
        "string lights",
        "lantern",
        "led strip",
        "bulb",
        "downlights",
        "track lights",
        "fairy lights",
        "wall light",
        "vanity light",
        "bedside lamp",
        "uplighter",
    ],
    "switch": [
        "switch",
        "outlet",
        "plug",
        "smart plug",
        "power strip",
        "socket",
        "relay",
        "coffee maker",
        "kettle",
        "heater",
        "space heater",
        "dehumidifier",
        "humidifier",
        "air purifier",
        "dishwasher",
        "washer",
        "dryer",
        "christmas tree",
        "fountain",
        "water heater",
        "pump",
        "sprinkler",
        "irrigation",
        "electric blanket",
        "towel warmer",
    ],
    "fan": ["fan", "ceiling fan", "tower fan", "box fan", "exhaust fan", "attic fan", "desk fan"],
    "cover": [
        "blinds",
        "shades",
        "curtains",
        "shutters",
        "garage door",
        "gate",
        "awning",
        "drapes",
        "roller blind",
        "skylight",
        "window",
        "door",
        "blackout blinds",
        "roller shutter",
    ],
    "valve": ["valve", "main valve", "water valve", "gas valve", "sprinkler valve", "hose valve"],
    "media_player": [
        "tv",
        "television",
        "speaker",
        "soundbar",
        "stereo",
        "radio",
        "receiver",
        "projector",
        "smart speaker",
        "media player",
        "record player",
        "jukebox",
        "subwoofer",
    ],
    "climate": [
        "thermostat",
        "heat pump",
        "air conditioner",
        "ac",
        "radiator",
        "furnace",
        "mini split",
        "heating",
        "climate",
    ],
    "lock": ["lock", "front door lock", "deadbolt", "back door lock", "smart lock"],
    "vacuum": ["vacuum", "robot vacuum", "mop", "robovac", "cleaner"],
    "lawn_mower": ["mower", "lawn mower", "robot mower", "lawnmower"],
    "sensor": [
        "sensor",
        "motion sensor",
        "door sensor",
        "window sensor",
        "smoke detector",
        "leak sensor",
        "thermometer",
        "camera",
        "doorbell",
        "alarm",
    ],
}
# Every domain with device names: those composed from DEVICE_NOUNS, then two composed from
# their own lists below.
NAME_DOMAINS = (*DEVICE_NOUNS, "todo", "weather")

# Weather entities are named after places and services; to-do lists after what is on them,
# stores and people. Composed like device names, so the held-out names test sees many
# values per domain rather than one or two.
PLACES = [
    "london",
    "paris",
    "berlin",
    "madrid",
    "rome",
    "vienna",
    "zurich",
    "oslo",
    "dublin",
    "lisbon",
    "amsterdam",
    "prague",
    "seattle",
    "portland",
    "denver",
    "austin",
    "boston",
    "chicago",
    "miami",
    "toronto",
    "vancouver",
    "sydney",
    "melbourne",
    "auckland",
    "tokyo",
    "new york",
    "san diego",
    "salt lake city",
    "lake house",
    "cabin",
    "cottage",
    "beach house",
    "downtown",
    "airport",
    "ski resort",
    "farm",
    "office",
    "city",
    "hometown",
    "village",
]
WEATHER_SERVICES = [
    "forecast",
    "weather",
    "home forecast",
    "local weather",
    "weather station",
    "accuweather",
    "openweathermap",
    "pirate weather",
    "met office",
    "backyard station",
    "rooftop station",
    "weather underground",
]
LIST_NOUNS = [
    "shopping",
    "grocery",
    "to-do",
    "chores",
    "packing",
    "errands",
    "party",
    "camping",
    "homework",
    "christmas",
    "wish",
    "tasks",
    "projects",
    "gift ideas",
    "reading",
    "watch",
    "repairs",
    "meal plan",
    "bucket",
    "garden",
    "weekend",
    "work",
    "school supplies",
    "house projects",
    "birthday",
    "honey do",
    "cleaning",
    "pharmacy",
]
STORES = [
    "costco",
    "hardware store",
    "target",
    "ikea",
    "walmart",
    "aldi",
    "lidl",
    "tesco",
    "trader joe's",
    "whole foods",
    "home depot",
    "safeway",
    "kroger",
    "pet store",
    "farmers market",
    "bakery",
    "butcher",
    "drugstore",
]
PET_NAMES = [
    "rosie",
    "jarvis",
    "bender",
    "wall-e",
    "dusty",
    "robbie",
    "hal",
    "marvin",
    "sparky",
    "mowgli",
    "roomie",
    "bolt",
    "zippy",
    "scooter",
    "bob",
    "alfred",
    "friday",
    "kitt",
]
POSITIONS = [
    "overhead",
    "corner",
    "desk",
    "bedside",
    "ceiling",
    "floor",
    "left",
    "right",
    "front",
    "back",
    "main",
    "accent",
    "window",
    "table",
    "wall",
    "upstairs",
    "downstairs",
    "big",
    "small",
    "tall",
    "outdoor",
    "indoor",
    "mood",
    "reading",
    "night",
    "hallway",
    "porch",
]

MESSAGES = [
    "dinner is ready",
    "time to wake up",
    "the movie is starting",
    "come downstairs please",
    "we are leaving in five minutes",
    "someone is at the door",
    "bedtime in ten minutes",
    "lunch is on the table",
    "please turn down the music",
    "the car is here",
    "it's time for homework",
    "grandma is on the phone",
    "the pizza has arrived",
    "don't forget your keys",
    "who took the remote",
    "take the dog out",
    "breakfast is served",
    "the game is about to start",
    "time to brush your teeth",
    "let's go to the park",
    "feed the cat",
    "the laundry is done",
    "quiet time starts now",
    "meeting starts soon",
    "clean up your room",
    "we're out of milk",
    "happy birthday",
    "the bus is coming",
    "shoes on we are going",
    "has anyone seen my phone",
    "the kids are asleep",
    "practice piano now",
    "the oven is preheated",
    "guests are arriving",
    "turn off the xbox",
    "it's raining bring the washing in",
    "movie night in the den",
    "school starts in an hour",
    "the cake is out of the oven",
    "time for the news",
    "the plumber is here",
    "we need to leave for the airport",
    "check the mailbox",
    "the coffee is ready",
]
SEARCH_QUERIES = [
    "taylor swift",
    "the beatles",
    "abbey road",
    "bohemian rhapsody",
    "jazz for studying",
    "lo-fi beats",
    "miles davis",
    "kind of blue",
    "the office",
    "stranger things",
    "dune",
    "the lion king",
    "my chill playlist",
    "morning coffee playlist",
    "daft punk",
    "random access memories",
    "this american life",
    "radiolab",
    "hamilton",
    "frozen",
    "classical piano",
    "rainy day jazz",
    "ed sheeran",
    "beyonce",
    "lemonade",
    "fleetwood mac",
    "rumours",
    "the dark side of the moon",
    "pink floyd",
    "rolling in the deep",
    "adele",
    "planet earth",
    "the mandalorian",
    "interstellar",
    "workout mix",
    "bluey",
    "peppa pig",
    "the daily",
    "serial",
    "nirvana",
    "smells like teen spirit",
    "kendrick lamar",
    "coldplay",
    "yellow",
    "the weeknd",
    "blinding lights",
    "billie eilish",
    "bad guy",
    "ludovico einaudi",
    "norah jones",
    "the rolling stones",
    "queen",
    "greatest hits",
    "dinner party jazz",
    "white noise",
    "ocean sounds",
    "bach cello suites",
    "the godfather",
    "toy story",
    "sleep sounds",
    "harry styles",
    "dua lipa",
    "my top songs",
    "road trip mix",
    "arctic monkeys",
]
SHOPPING_ITEMS = [
    "milk",
    "eggs",
    "bread",
    "apples",
    "bananas",
    "coffee",
    "butter",
    "cheese",
    "chicken",
    "rice",
    "pasta",
    "tomatoes",
    "onions",
    "garlic",
    "paper towels",
    "toilet paper",
    "dish soap",
    "laundry detergent",
    "orange juice",
    "yogurt",
    "cereal",
    "olive oil",
    "salt",
    "pepper",
    "avocados",
    "spinach",
    "carrots",
    "potatoes",
    "dog food",
    "cat litter",
    "batteries",
    "light bulbs",
    "toothpaste",
    "shampoo",
    "ice cream",
    "strawberries",
    "blueberries",
    "peanut butter",
    "jam",
    "flour",
    "sugar",
    "baking soda",
    "tea",
    "lemons",
    "limes",
    "ground beef",
    "salmon",
    "tortillas",
    "beans",
    "almond milk",
    "granola",
    "honey",
    "sparkling water",
    "wine",
    "beer",
    "trash bags",
    "sponges",
    "aluminum foil",
    "diapers",
    "baby wipes",
    "frozen peas",
    "broccoli",
    "cucumbers",
    "bagels",
    "cream cheese",
]
TODO_ITEMS = [
    "call the dentist",
    "pay the electric bill",
    "book flights",
    "renew passport",
    "water the plants",
    "clean the gutters",
    "fix the fence",
    "email the landlord",
    "pick up dry cleaning",
    "schedule oil change",
    "return library books",
    "mow the lawn",
    "buy a birthday present",
    "take out the recycling",
    "vacuum the car",
    "cancel gym membership",
    "send thank you cards",
    "file taxes",
    "change the air filter",
    "walk the dog",
    "defrost the freezer",
    "clean the oven",
    "organize the garage",
    "back up the laptop",
    "update the resume",
    "call mom",
    "make a vet appointment",
    "order new glasses",
    "repaint the hallway",
    "sort the mail",
    "plan the party",
    "wash the windows",
    "replace smoke detector batteries",
    "study for the exam",
    "pack for the trip",
    "bake cookies",
    "fold the laundry",
    "reply to grandma",
    "buy stamps",
    "check tire pressure",
]
TIMER_NAMES = [
    "pizza",
    "laundry",
    "pasta",
    "eggs",
    "cookies",
    "bread",
    "tea",
    "nap",
    "homework",
    "oven",
    "roast",
    "rice",
    "chicken",
    "workout",
    "meditation",
    "parking",
    "cake",
    "potatoes",
    "steak",
    "brownies",
    "turkey",
    "screen time",
    "study",
    "stretching",
    "soup",
    "muffins",
    "plank",
    "dishwasher",
    "sourdough",
    "coffee",
    "popcorn",
    "lasagna",
    "quiche",
    "cupcakes",
    "reading",
]
# Commands run when a timer ends ("in 5 minutes turn off the tv"): composed per split from that
# split's devices and rooms, so the model learns the slot from the timer context, not the words.
COMMAND_VERBS = [
    "turn off",
    "turn on",
    "switch off",
    "switch on",
    "open",
    "close",
    "dim",
    "start",
    "stop",
    "pause",
    "lock",
    "unlock",
    "shut off",
]
ZONES = [
    "home",
    "work",
    "school",
    "the office",
    "the gym",
    "grandma's house",
    "downtown",
    "the airport",
    "the beach",
    "the cabin",
    "the store",
    "the park",
    "church",
    "the farm",
]

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

# Rooms nearly every home has stay in training (a model that never heard "living room" is not
# realistic); the rest are split, so held-out evaluation still sees rooms never trained on.
CORE_ROOMS = [
    "kitchen",
    "living room",
    "bedroom",
    "bathroom",
    "office",
    "hallway",
    "garage",
    "basement",
    "dining room",
]

# Parts of out-of-scope training sentences (questions about other things, chit-chat). The
# evaluation set in export/eval/out_of_scope.txt is written separately and never sampled here.
OOS_OPENERS = [
    "what is",
    "what's",
    "who is",
    "who was",
    "tell me about",
    "explain",
    "how do i",
    "how do you",
    "how does",
    "why is",
    "why do",
    "where is",
    "when is",
    "when was",
    "can you tell me about",
    "do you know",
    "i want to know about",
    "search the web for",
    "look up",
    "what do you think about",
    "give me facts about",
    "how much does",
    "how many people like",
    "is it true that",
    "i wonder about",
]
OOS_TOPICS = [
    "quantum physics",
    "the roman empire",
    "a good recipe for soup",
    "the tallest building in the world",
    "photosynthesis",
    "the best pizza in town",
    "the olympics",
    "my horoscope",
    "black holes",
    "the history of jazz",
    "learning to play guitar",
    "the price of gold",
    "a cheap flight to paris",
    "dinosaurs",
    "the rules of chess",
    "climate change",
    "the next election",
    "a good movie to watch",
    "the chemical formula for salt",
    "the lyrics of that song",
    "taxes",
    "the nearest pharmacy",
    "how to change a tire",
    "the world cup",
    "vitamin d",
    "the human brain",
    "electric cars",
    "the great wall of china",
    "the best running shoes",
    "knitting a scarf",
    "the first man in space",
    "volcanoes",
    "the price of a new phone",
    "my bank balance",
    "the meaning of that word",
    "the traffic on the highway",
    "shakespeare",
    "the population of canada",
    "a birthday present for my sister",
    "baking bread at home",
]
OOS_CHAT = [
    "hello there",
    "hi",
    "how's it going",
    "what's up",
    "good night",
    "see you later",
    "thanks a lot",
    "you are awesome",
    "i'm tired",
    "i'm hungry",
    "that's funny",
    "nice to meet you",
    "what's your name",
    "who made you",
    "do you have feelings",
    "are you happy",
    "what do you look like",
    "i had a long day",
    "that was a great game",
    "can we be friends",
    "say something funny",
    "you're the best",
    "i don't know",
    "maybe later",
    "what do you mean",
    "that makes no sense",
    "yes",
    "no",
    "okay cool",
    "whatever",
    "do a barrel roll",
    "guess what",
    "knock knock",
    "happy birthday",
    "merry christmas",
    "what are you doing",
    "blah blah blah",
    "testing one two three",
    "let me think",
    "where do you live",
]


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


AREA_SIDES = ["upstairs", "downstairs", "front", "back", "main", "second", "small", "big", "east"]
AREA_WORDS = ["room", "bedroom", "bathroom", "office", "closet", "playroom", "studio"]


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
