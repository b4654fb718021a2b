import json

import pytest

from edgekit.card import HeadSpec, InputSpec, ModelCard
from edgekit.errors import CardError


def _card(**kw):
    return ModelCard(name="m", arch="mobileone_s0",
                     heads=[HeadSpec("age", "regression"), HeadSpec("gender", "classification", ["f", "m"]),
                            HeadSpec("tags", "multilabel", ["a", "b", "c"], threshold=0.3)],
                     input=InputSpec(size=[64, 48], mean=[0.5] * 3, std=[0.25] * 3), **kw)


def test_round_trip_keeps_everything():
    card = _card(metrics={"val": {"gender/acc": 0.9}}, provenance={"stage": "train"})
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.head("tags").outputs == 3 and again.head("tags").threshold == 0.3
    assert again.head("age").outputs == 1


def test_unknown_fields_are_ignored_for_forward_compatibility():
    data = json.loads(_card().to_json())
    data["future_field"] = 1
    data["input"]["future"] = "x"
    assert ModelCard.from_dict(data).arch == "mobileone_s0"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("heads"), "missing heads"),
    (lambda d: d["heads"].append({"name": "age", "kind": "regression"}), "unique"),
    (lambda d: d["heads"][1].update(kind="ranking"), "kind must be one of"),
    (lambda d: d["heads"][1].update(classes=[]), "needs class names"),
    (lambda d: d["input"].update(mean=[0.5]), "3 values"),
    (lambda d: d["input"].update(layout="CHWN"), "layout"),
    (lambda d: d.update(version=99), "newer"),
])
def test_broken_cards_fail_with_a_reason(mutate, message):
    data = json.loads(_card().to_json())
    mutate(data)
    with pytest.raises(CardError, match=message):
        ModelCard.from_dict(data)


def test_not_json():
    with pytest.raises(CardError, match="not valid JSON"):
        ModelCard.from_json("{nope")
