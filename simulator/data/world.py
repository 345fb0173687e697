"""The invented-world corpus (`data.kind: world`): documents with topics and regular word relations.

A second generator beside `corpus.py` (which stays as it is: the golden file and every lesson built on
the default corpus read it). Seeded, no download, only `random.Random.random()` for choices.

* Documents, one paragraph each (blank lines between), each on one *topic* (`TOPICS`): court, farm,
  sea, travel, market. A topic has its own nouns, verbs and places, so TF-IDF keywords differ per
  document and a sentence's topic tells which document it came from (what makes NSP easy).
* Sentences in a document follow a little time line ("first", "then", "later", "at last"), so the
  order of two consecutive sentences can be told from the text (what SOP asks).
* Regular relations a good embedding can recover (`RELATIONS`): role x gender (king / queen, each
  with he / she and his / her after it, "she is the queen of ..."), singular x plural (with agreeing
  verbs, "the goat feeds" / "the goats feed", and "there is one goat" / "there are many goats"),
  and country x capital of an invented world ("tolm is the capital of varnia";
  travel documents visit a country and its capital together).

Word-level: every token the lessons count is a lowercase word; punctuation is only "." and ",".
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from simulator.data.corpus import _Grammar

WORLD_TARGET_CHARS = 300_000

# (country, capital) of the invented world; names chosen to be no English word
CAPITALS = (("varnia", "tolm"), ("oskeria", "brell"), ("quendor", "miros"), ("lusath", "pelk"),
            ("dravona", "kesh"), ("ambrel", "sorin"), ("tivoria", "gald"), ("zemlar", "orvik"))
# (male, female) roles; each topic uses some of them
GENDER = (("king", "queen"), ("prince", "princess"), ("lord", "lady"), ("father", "mother"),
          ("son", "daughter"), ("uncle", "aunt"), ("brother", "sister"), ("husband", "wife"),
          ("man", "woman"), ("boy", "girl"), ("monk", "nun"), ("nephew", "niece"))
# what each pair of roles cares about, so that king and queen share contexts that father and mother do not
CARES = {"king": "kingdom", "prince": "tournament", "lord": "estate", "father": "family", "son": "lessons",
         "uncle": "stories", "brother": "games", "husband": "wedding", "man": "work", "boy": "school",
         "monk": "prayers", "nephew": "toys"}
# what each thing has: its own context word (goat: horns), so that nouns of one topic are told apart
TRAITS = {"crown": "jewels", "sword": "blade", "banner": "colours", "knight": "armour", "throne": "steps",
          "feast": "music", "goat": "horns", "cow": "milk", "hen": "eggs", "horse": "saddle", "pig": "snout",
          "field": "furrows", "plough": "handles", "ship": "mast", "sailor": "tattoos", "net": "knots",
          "fish": "scales", "wave": "foam", "anchor": "chain", "oar": "grip", "road": "ruts", "map": "markings",
          "inn": "beds", "traveller": "boots", "wagon": "wheels", "bridge": "arches", "loaf": "crust",
          "coin": "stamp", "apple": "core", "cheese": "rind", "stall": "awning", "basket": "lid",
          "merchant": "purse"}


class Noun(NamedTuple):
    singular: str
    plural: str


def _n(*pairs: str) -> tuple[Noun, ...]:
    return tuple(Noun(*p.split("/")) for p in pairs)


class Topic(NamedTuple):
    """The words one kind of document is made of."""

    name: str
    roles: tuple[tuple[str, str], ...]  # (male, female) people of this topic
    nouns: tuple[Noun, ...]  # things, which take singular or plural
    verbs: tuple[tuple[str, str], ...]  # (with a singular subject, with a plural subject), each takes an object
    places: tuple[str, ...]
    adjectives: tuple[str, ...]


TOPICS = (
    Topic("court", GENDER[:3] + (GENDER[10],),
          _n("crown/crowns", "sword/swords", "banner/banners", "knight/knights", "throne/thrones", "feast/feasts"),
          (("guards", "guard"), ("praises", "praise"), ("carries", "carry"), ("polishes", "polish")),
          ("the castle", "the great hall", "the tower", "the chapel"), ("golden", "royal", "proud", "ancient")),
    Topic("farm", GENDER[3:6] + (GENDER[9],),
          _n("goat/goats", "cow/cows", "hen/hens", "horse/horses", "pig/pigs", "field/fields", "plough/ploughs"),
          (("feeds", "feed"), ("milks", "milk"), ("ploughs", "plough"), ("counts", "count")),
          ("the barn", "the meadow", "the orchard", "the pond"), ("muddy", "fat", "brown", "lazy")),
    Topic("sea", GENDER[6:9],
          _n("ship/ships", "sailor/sailors", "net/nets", "fish/fish", "wave/waves", "anchor/anchors", "oar/oars"),
          (("mends", "mend"), ("hauls", "haul"), ("rows", "row"), ("watches", "watch")),
          ("the harbour", "the beach", "the lighthouse", "the deep water"), ("salty", "wet", "blue", "stormy")),
    Topic("travel", (GENDER[8], GENDER[1]),
          _n("road/roads", "map/maps", "inn/inns", "traveller/travellers", "wagon/wagons", "bridge/bridges"),
          (("follows", "follow"), ("crosses", "cross"), ("draws", "draw"), ("repairs", "repair")),
          (), ("long", "dusty", "narrow", "distant")),
    Topic("market", GENDER[4:6] + (GENDER[11],),
          _n("loaf/loaves", "coin/coins", "apple/apples", "cheese/cheeses", "stall/stalls", "basket/baskets",
             "merchant/merchants"),
          (("sells", "sell"), ("buys", "buy"), ("weighs", "weigh"), ("wraps", "wrap")),
          ("the square", "the stall", "the bakery", "the fountain"), ("fresh", "cheap", "ripe", "heavy")),
)
TOPIC_NAMES = tuple(t.name for t in TOPICS)
ORDER_WORDS = ("first", "then", "later", "after that", "at last")

RELATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "gender": GENDER,
    "plural": tuple((n.singular, n.plural) for t in TOPICS for n in t.nouns if n.singular != n.plural),
    "capital": tuple((country, capital) for country, capital in CAPITALS),
}


class Document(NamedTuple):
    """One generated document: its topic and its sentences in order."""

    topic: str
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


class _World(_Grammar):
    """Draws documents of the invented world (the base class gives `below`, `pick`, `chance`)."""

    def thing(self, topic: Topic) -> tuple[str, bool]:
        """A noun phrase of the topic's things and whether it is plural."""
        noun = self.pick(topic.nouns)
        plural = self.chance(0.4)
        adj = self.pick(topic.adjectives) + " " if self.chance(0.4) else ""
        if plural:
            return f"{self.pick(('the', 'two', 'many', 'some'))} {adj}{noun.plural}", True
        return f"{self.pick(('the', 'one', 'the', 'that'))} {adj}{noun.singular}", False

    def person(self, topic: Topic) -> tuple[str, str, str]:
        """(a role, its pronoun, its possessive): 'the queen', 'she', 'her'."""
        male, female = self.pick(topic.roles)
        if self.chance(0.5):
            return male, "he", "his"
        return female, "she", "her"

    def place(self, topic: Topic, country: tuple[str, str]) -> str:
        if topic.name == "travel":
            name, capital = country
            return self.pick((f"the city of {capital}", f"the land of {name}", f"the road to {capital}"))
        return self.pick(topic.places)

    def sentence(self, topic: Topic, country: tuple[str, str]) -> str:
        """One sentence: a person or things doing something with the topic's things, somewhere."""
        if topic.name == "travel" and self.chance(0.3):
            name, capital = country
            return self.pick((f"{capital} is the capital of {name}", f"the capital of {name} is {capital}",
                              f"in {capital} the people of {name} trade"))
        r = self.rng.random()
        if r < 0.15:  # number: "there is one goat" / "there are many goats"
            noun = self.pick(topic.nouns)
            where = self.place(topic, country)
            if self.chance(0.5):
                return f"there is {self.pick(('one', 'a single'))} {noun.singular} in {where}"
            return f"there are {self.pick(('many', 'two', 'three'))} {noun.plural} in {where}"
        if r < 0.25:  # gender: "she is the queen of the castle"
            role, pronoun, _ = self.person(topic)
            return f"{pronoun} is the {role} of {self.place(topic, country)}"
        if r < 0.35:  # each pair of roles its own care: "the queen loves her kingdom"
            male, female = self.pick(topic.roles)
            female_one = self.chance(0.5)
            return (f"the {female if female_one else male} loves {'her' if female_one else 'his'} "
                    f"{CARES[male]}")
        if r < 0.45:  # each thing its own trait: "the goat has horns" / "the goats have horns"
            noun = self.pick(topic.nouns)
            if self.chance(0.5):
                return f"the {noun.singular} has {TRAITS[noun.singular]}"
            return f"the {noun.plural} have {TRAITS[noun.singular]}"
        verb = self.pick(topic.verbs)
        obj, _ = self.thing(topic)
        if self.chance(0.55):
            role, pronoun, possessive = self.person(topic)
            s = f"the {role} {verb[0]} {obj}"
            if self.chance(0.5):
                s += f" and {pronoun} rests in {self.place(topic, country)}"
            else:
                s += f" with {possessive} {self.pick(topic.nouns).singular}"
            return s
        subject, plural = self.thing(topic)
        return f"{subject} {verb[1] if plural else verb[0]} {obj} near {self.place(topic, country)}"

    def document(self) -> Document:
        """Four to seven sentences on one topic: "first, ..." opens it, "at last, ..." closes it (mostly)."""
        topic = self.pick(TOPICS)
        country = self.pick(CAPITALS)
        n = 4 + self.below(4)
        sentences = []
        for i in range(n):
            s = self.sentence(topic, country)
            if self.chance(0.7):
                word = "first" if i == 0 else "at last" if i == n - 1 else self.pick(ORDER_WORDS[1:-1])
                s = f"{word}, {s}"
            sentences.append(s + ".")
        return Document(topic.name, tuple(sentences))


def world_documents(target_chars: int = WORLD_TARGET_CHARS, seed: int = 0) -> list[Document]:
    """Documents of the invented world until their text, blank lines between, has `target_chars` characters."""
    world = _World(seed)
    docs, size = [], 0
    while size < target_chars:
        d = world.document()
        docs.append(d)
        size += len(d.text) + 2
    return docs


@lru_cache(maxsize=1)
def world_corpus() -> str:
    """The invented-world corpus (about 300 KB, identical on every machine): one document a paragraph."""
    return "\n\n".join(d.text for d in world_documents()) + "\n"
