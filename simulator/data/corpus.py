"""The built-in corpus: a small, generated, fully deterministic text with structure a tiny GPT can learn.

The text is produced by a seeded grammar, not copied from anywhere, so it needs no download and is
the same on every machine. It mixes several kinds of paragraph, each teaching the model something a
learner can see in the samples after a few hundred steps:

* stories:   subject-verb agreement ("the cat runs" / "the cats run") and a fixed word list
* dialogues: a question names a thing and the answer repeats it (copying across a line: attention)
* rhymes:    couplets whose last words rhyme
* counting:  "count: 17 18 19 20." and number words ("one, two, three.")
* alphabet:  runs of letters ("d e f g h.")

Only `random.Random.random()` is used for choices: it is the one method Python guarantees to give the
same sequence for the same integer seed across versions (helpers such as `choice` may change).
"""

from __future__ import annotations

import random
from functools import lru_cache

TARGET_CHARS = 300_000  # about 300 KB: big enough not to be memorised in a few hundred steps

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve")

DETERMINERS = ("the", "a", "my", "your", "our", "her", "his", "that", "this")
PLURAL_DETERMINERS = ("the", "my", "your", "our", "her", "his", "those", "these", "some")
ADJECTIVES = ("small", "big", "red", "old", "happy", "quiet", "little", "brave", "green", "sleepy",
              "clever", "tall", "kind", "grey", "young", "hungry")
# (singular, plural); a few irregular plurals give the model something that is not a rule
NOUNS = (("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("fox", "foxes"), ("king", "kings"),
         ("girl", "girls"), ("boy", "boys"), ("ship", "ships"), ("tree", "trees"), ("frog", "frogs"),
         ("horse", "horses"), ("mouse", "mice"), ("child", "children"), ("sheep", "sheep"),
         ("baker", "bakers"), ("farmer", "farmers"), ("queen", "queens"), ("goat", "goats"))
# (third person singular, plural, past)
VERBS = (("sees", "see", "saw"), ("finds", "find", "found"), ("likes", "like", "liked"),
         ("follows", "follow", "followed"), ("chases", "chase", "chased"), ("carries", "carry", "carried"),
         ("watches", "watch", "watched"), ("helps", "help", "helped"), ("calls", "call", "called"),
         ("paints", "paint", "painted"))
# (third person singular, plural, past) of verbs that take no object
INTRANSITIVE = (("runs", "run", "ran"), ("sleeps", "sleep", "slept"), ("sings", "sing", "sang"),
                ("waits", "wait", "waited"), ("jumps", "jump", "jumped"), ("hides", "hide", "hid"))
PREPOSITIONS = ("on", "under", "near", "over", "behind", "beside", "inside")
PLACES = ("the hill", "the river", "the bridge", "the old wall", "the garden", "the market", "the barn",
          "the big rock", "the green field", "the dark wood", "the little house", "the well")
TIMES = ("in the morning", "at night", "after lunch", "every day", "in the rain", "before dinner")
QUESTION_WORDS = ("where is", "who saw", "who has", "why did you hide")
ASKED = ("asked", "asked", "whispered", "called")
ANSWERED = ("said", "replied", "whispered", "called")
# groups of rhyming nouns: a couplet ends on two words of one group
RHYMES = (("cat", "hat", "mat", "bat", "rat"), ("day", "way", "hay", "bay", "tray"),
          ("night", "light", "kite", "sight"), ("tree", "sea", "bee", "key", "knee"),
          ("moon", "spoon", "tune", "dune", "noon"), ("hill", "mill", "sill", "grill"),
          ("rain", "lane", "train", "plain", "grain"), ("sun", "bun", "run", "nun"))


class _Grammar:
    """Draws phrases from the word lists with one `random.Random`, using only `random()`."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        return int(self.rng.random() * n)

    def pick(self, seq):
        """A uniform element of a sequence."""
        return seq[self.below(len(seq))]

    def chance(self, p: float) -> bool:
        """True with probability p."""
        return self.rng.random() < p

    def noun_phrase(self) -> tuple[str, bool]:
        """A noun phrase and whether it is plural."""
        singular, plural = self.pick(NOUNS)
        is_plural = self.chance(0.35)
        det = self.pick(PLURAL_DETERMINERS if is_plural else DETERMINERS)
        adj = self.pick(ADJECTIVES) + " " if self.chance(0.6) else ""
        noun = plural if is_plural else singular
        if det == "a" and adj[:1] in tuple("aeiou"):
            det = "an"
        return f"{det} {adj}{noun}", is_plural

    def clause(self) -> str:
        """Subject, verb agreeing with it (or past tense), and an object or a place."""
        subject, plural = self.noun_phrase()
        past = self.chance(0.3)
        if self.chance(0.5):
            verb = self.pick(VERBS)
            rest = self.noun_phrase()[0]
        else:
            verb = self.pick(INTRANSITIVE)
            rest = f"{self.pick(PREPOSITIONS)} {self.pick(PLACES)}"
        word = verb[2] if past else verb[1] if plural else verb[0]
        text = f"{subject} {word} {rest}"
        if self.chance(0.25):
            text += " " + self.pick(TIMES)
        return text

    def story(self) -> str:
        """A paragraph of three to six sentences."""
        sentences = []
        for _ in range(3 + self.below(4)):
            s = self.clause()
            if self.chance(0.25):
                s += self.pick((", and ", ", but ", " because ")) + self.clause()
            sentences.append(s + self.pick((".", ".", ".", "!")))
        return " ".join(sentences)

    def dialogue(self) -> str:
        """A question about a thing and an answer that repeats it."""
        lines = []
        for _ in range(2 + self.below(3)):
            thing, plural = self.noun_phrase()
            asker, _ = self.noun_phrase()
            answerer, _ = self.noun_phrase()
            q = self.pick(QUESTION_WORDS)
            if q == "where is":
                q = "where are" if plural else q
                be = "are" if plural else "is"
                answer = f"{thing} {be} {self.pick(PREPOSITIONS)} {self.pick(PLACES)}"
            elif q == "why did you hide":
                answer = f"i hid {thing} because {self.clause()}"
            else:
                who = self.pick(("i", "we", "nobody", "the queen"))
                verb = "saw" if q == "who saw" else "has" if who in ("nobody", "the queen") else "have"
                answer = f"{who} {verb} {thing}"
            lines.append(f'"{q} {thing}?" {self.pick(ASKED)} {asker}.')
            lines.append(f'"{answer}," {self.pick(ANSWERED)} {answerer}.')
        return "\n".join(lines)

    def rhyme(self) -> str:
        """Two or three couplets whose lines end on rhyming words."""
        lines = []
        for _ in range(2 + self.below(2)):
            group = self.pick(RHYMES)
            first = self.pick(group)
            second = self.pick(group)
            while second == first:
                second = self.pick(group)
            subject, plural = self.noun_phrase()
            verb = self.pick(INTRANSITIVE)[1 if plural else 0]
            lines.append(f"{subject} {verb} {self.pick(PREPOSITIONS)} the {first},")
            lines.append(f"{self.pick(('and', 'so', 'then', 'but'))} {self.clause()} {self.pick(('with', 'by', 'for'))}"
                         f" the {second}.")
        return "\n".join(lines)

    def counting(self) -> str:
        """Counting runs in digits, and number words."""
        lines = []
        for _ in range(1 + self.below(3)):
            start = self.below(90)
            step = self.pick((1, 1, 1, 2, 5, 10))
            n = 4 + self.below(6)
            lines.append("count: " + " ".join(str(start + i * step) for i in range(n)) + ".")
        start = self.below(len(NUMBER_WORDS) - 4)
        n = 3 + self.below(len(NUMBER_WORDS) - start - 2)
        lines.append(", ".join(NUMBER_WORDS[start:start + n]) + ".")
        a, b = 1 + self.below(9), 1 + self.below(9)
        lines.append(f"{a} + {b} = {a + b}.")
        return "\n".join(lines)

    def alphabet(self) -> str:
        """Runs of consecutive letters, spaced and in little blocks."""
        start = self.below(20)
        n = 4 + self.below(26 - start - 3)
        spaced = " ".join(ALPHABET[start:start + n]) + "."
        width = 3
        blocks = " ".join(ALPHABET[i:i + width] for i in range(start, min(start + n, 26 - width + 1)))
        return spaced + "\n" + blocks + "."

    def paragraph(self) -> str:
        """One paragraph of a kind drawn with fixed weights."""
        r = self.rng.random()
        if r < 0.40:
            return self.story()
        if r < 0.65:
            return self.dialogue()
        if r < 0.80:
            return self.rhyme()
        if r < 0.92:
            return self.counting()
        return self.alphabet()


def generate_corpus(target_chars: int = TARGET_CHARS, seed: int = 0) -> str:
    """Paragraphs from the grammar, separated by blank lines, until the text has `target_chars` characters."""
    grammar = _Grammar(seed)
    parts, size = [], 0
    while size < target_chars:
        p = grammar.paragraph()
        parts.append(p)
        size += len(p) + 2
    return "\n\n".join(parts) + "\n"


@lru_cache(maxsize=1)
def builtin_corpus() -> str:
    """The built-in default corpus (about 300 KB, identical on every machine)."""
    return generate_corpus()
