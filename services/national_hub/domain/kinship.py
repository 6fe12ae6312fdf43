"""Close relatives (近亲属) and how a relation reads from the other side. The kinship registry stores
"b is <relation> of a"; a binding asks "is the relative <relation> of the giver?"."""

from __future__ import annotations

RELATIONS = ("spouse", "parent", "child", "sibling", "grandparent", "grandchild")

INVERSE = {
    "spouse": "spouse",
    "sibling": "sibling",
    "parent": "child",
    "child": "parent",
    "grandparent": "grandchild",
    "grandchild": "grandparent",
}


def facts_proving(giver_hash: str, relative_hash: str, relation: str) -> list[tuple[str, str, str]]:
    """The registry rows (a, b, relation of b to a), any of which proves the relative is `relation` of the giver."""
    return [(giver_hash, relative_hash, relation), (relative_hash, giver_hash, INVERSE[relation])]
