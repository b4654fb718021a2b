"""Head names are user data: any string trains, traces and comes back unchanged (issue: `class`)."""

import pytest
import torch

from edgekit.card import HeadSpec
from edgekit.errors import ConfigError
from edgekit.train.models import NamedHeads, build_student, check_input_size
from edgekit.train.trained import HeadsAsTuple

NAMES = ["class", "import", "3d", "age group", "émotion", "a.b", "a_b"]


def _model(names=NAMES):
    return build_student("test_efficientnet", [HeadSpec(n, "classification", ["x", "y"]) for n in names]).eval()


def test_module_names_are_safe_and_user_names_unchanged():
    model = _model()
    keys = [k.split(".")[1] for k in model.state_dict() if k.startswith("heads.")]
    assert all(k.isidentifier() and not __import__("keyword").iskeyword(k) for k in keys)
    assert len({k for k in keys}) == len(NAMES)  # 'a.b' and 'a_b' do not collide
    out = model(torch.zeros(2, 3, 16, 16))
    assert list(out) == NAMES and list(model.heads) == NAMES
    assert "class" in model.heads and model.heads["age group"] is dict(model.heads.items())["age group"]


def test_torch_export_traces_keyword_head_names():
    model = _model()
    program = torch.export.export(HeadsAsTuple(model, NAMES).eval(), (torch.zeros(1, 3, 16, 16),))
    program.module().print_readable(print_output=False)  # FX code generation: `heads.class` was a SyntaxError
    assert len(program.module()(torch.zeros(1, 3, 16, 16))) == len(NAMES)


def test_legacy_state_dicts_keyed_by_user_names_still_load():
    model = _model(["digit", "age group"])
    legacy = {k.replace("heads.h_digit.", "heads.digit.").replace("heads.h_age_group.", "heads.age group."): v
              for k, v in model.state_dict().items()}
    assert any(k.startswith("heads.digit.") for k in legacy)
    fresh = _model(["digit", "age group"])
    fresh.load_state_dict(legacy)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(fresh(x)["digit"], model(x)["digit"])


def test_named_heads_behaves_like_a_dict():
    heads = NamedHeads({"class": torch.nn.Identity()})
    heads["3d"] = torch.nn.Linear(1, 1)
    assert list(heads) == ["class", "3d"] and len(heads) == 2 and "3d" in heads and "x" not in heads
    assert not NamedHeads()


@pytest.mark.parametrize("arch, size, message", [
    ("test_efficientnet", 3, "too small for test_efficientnet"),
    ("deit_tiny_patch16_224", 160, "cannot take 160 px input"),
])
def test_input_sizes_the_architecture_cannot_take_are_refused(arch, size, message):
    model = build_student(arch, [HeadSpec("class", "classification", ["a", "b"])])
    model.train()
    with pytest.raises(ConfigError, match=message):
        check_input_size(model, size)
    assert model.training  # the check leaves the model as it found it


def test_small_but_real_input_sizes_pass():
    check_input_size(_model(), 16)
