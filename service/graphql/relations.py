"""The relation fields of each record type, derived from the registry: references, lists of references, pages of
children and a marker's latest measurement. Each names what it reads and the permission it needs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from service.collections.registry import REGISTRY, Collection, owner
from service.graphql.errors import camel

Kind = Literal["one", "many", "children", "latest"]


@dataclass(frozen=True, eq=False)  # one instance per field (relations_of is cached): hashed by identity
class Relation:
    """A relation field of a record type: its Python name, what it reads and with which permission."""

    name: str
    kind: Kind
    target: Collection
    attr: str  # one/many: the parent's column naming the target; children: the child's foreign key
    perm: str  # "r" for references, "s" for lists (as the REST routes that read them)


@cache
def relations_of(coll_name: str) -> dict[str, Relation]:
    """The relation fields of a collection's record type, by Python name."""
    coll = REGISTRY[coll_name]
    out: list[Relation] = []
    if coll.client_owned:
        out.append(Relation("client", "one", owner(), coll.owner_column, "r"))
    for ref in coll.refs:
        if "." in ref.field:
            continue
        target = REGISTRY[ref.target]
        if ref.many:
            out.append(Relation(ref.field.removesuffix("_ids") + "s", "many", target, ref.field, "r"))
        else:
            out.append(Relation(ref.field.removesuffix("_id"), "one", target, ref.field, "r"))
    for child_name, fk in coll.children.items():
        child = REGISTRY[child_name]
        out.append(Relation(child.key, "children", child, fk, "s"))
    for field_name, (child_name, fk) in coll.latest.items():
        out.append(Relation(field_name, "latest", REGISTRY[child_name], fk, "s"))
    return {rel.name: rel for rel in out}


@cache
def by_graphql_name(coll_name: str) -> dict[str, Relation]:
    return {camel(rel.name): rel for rel in relations_of(coll_name).values()}
