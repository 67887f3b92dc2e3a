"""Random two-word flow run names (`celestial-rottweiler`), as Prefect gives them."""

from __future__ import annotations

_ADJECTIVES = (
    "amber", "ancient", "bold", "brave", "bright", "calm", "celestial", "cheerful", "clever", "cosmic",
    "crimson", "curious", "daring", "dazzling", "eager", "electric", "emerald", "fearless", "fierce", "gentle",
    "golden", "graceful", "hairy", "happy", "hidden", "humble", "icy", "jolly", "keen", "lively",
    "lucky", "magic", "mellow", "micro", "mighty", "misty", "nimble", "noble", "olive", "orange",
    "patient", "polite", "proud", "quick", "quiet", "rapid", "relaxed", "rosy", "rugged", "sandy",
    "scarlet", "shiny", "silent", "silver", "smart", "sparkling", "spicy", "steady", "stormy", "sunny",
    "swift", "tidy", "topaz", "tranquil", "true", "vivid", "warm", "wild", "wise", "witty",
)
_ANIMALS = (
    "alligator", "antelope", "badger", "beaver", "bison", "bobcat", "buffalo", "camel", "caribou", "cheetah",
    "chipmunk", "cobra", "condor", "cougar", "coyote", "crane", "dachshund", "dingo", "dolphin", "eagle",
    "falcon", "ferret", "finch", "flamingo", "fox", "gazelle", "gecko", "gopher", "heron", "hyena",
    "ibex", "iguana", "jackal", "jaguar", "kangaroo", "koala", "lemur", "leopard", "llama", "locust",
    "lynx", "marmot", "mink", "moose", "narwhal", "ocelot", "otter", "panda", "panther", "parrot",
    "peccary", "pelican", "penguin", "puffin", "rabbit", "raccoon", "raven", "rottweiler", "salamander", "seal",
    "sloth", "sparrow", "squirrel", "tapir", "tiger", "toucan", "turtle", "walrus", "weasel", "wolf",
)


def generate_slug() -> str:
    import random  # here, not at import: `import ferroflow` stays fast

    return f"{random.choice(_ADJECTIVES)}-{random.choice(_ANIMALS)}"
