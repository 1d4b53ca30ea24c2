"""An offset check that can fail: entities are tied to the tokens they cover, and tokens to the text."""


def check_entity_offsets(text, doc):
    """Each token's offsets slice the text to the token; each entity starts at the start of a
    token and ends at the end of a token (its first and last), the tokens between carry its
    label, and its text is what its offsets slice."""
    tokens = doc["tokens"]
    for tok in tokens:
        assert text[tok["start"]:tok["end"]] == tok["text"], tok
    first_at = {tok["start"]: i for i, tok in enumerate(tokens)}
    last_at = {tok["end"]: i for i, tok in enumerate(tokens)}
    for ent in doc["entities"]:
        assert ent["start"] in first_at and ent["end"] in last_at, (ent, tokens)
        first, last = first_at[ent["start"]], last_at[ent["end"]]
        assert first <= last, ent
        assert ent["start"] == tokens[first]["start"] and ent["end"] == tokens[last]["end"]
        assert all(t["tag"] != "O" and t["tag"].split("-", 1)[-1] == ent["label"] for t in tokens[first:last + 1]), \
            (ent, tokens[first:last + 1])
        assert text[ent["start"]:ent["end"]] == ent["text"], ent
