"""The registry shape shared by datasets, backbones and classifiers."""

import pytest

from featurestore.errors import InvalidName
from featurestore.registry import Registry, alternatives


class UnknownThing(InvalidName):
    pass


def test_registry_registers_once_lists_in_order_and_names_the_known_ones():
    loads = []
    things = Registry("thing", error=UnknownThing, hint=" (see `featurestore things`)",
                      populate=lambda: loads.append(things.register("beta", 2)))
    things.register("alpha", 1)
    assert loads == []
    assert things.names() == ["alpha", "beta"] and loads == [2]
    assert things.get("beta") == 2 and "alpha" in things and len(things) == 2
    with pytest.raises(ValueError, match="thing 'alpha' is already registered"):
        things.register("alpha", 3)
    assert things.register("alpha", 3, replace=True) == 3
    with pytest.raises(UnknownThing, match=r"^unknown thing 'gamma': choose one of alpha, beta \(see `featurestore things`\)$"):
        things.get("gamma")
    assert things.names() == ["alpha", "beta"] and loads == [2]
    assert things.items() == [("alpha", 3), ("beta", 2)]


def test_alternatives_read_as_a_choice():
    choices = [alternatives(words) for words in ([], ["a"], ["a", "b"], ["a", "b", "c"])]
    assert choices == ["", "a", "a or b", "a, b or c"]
