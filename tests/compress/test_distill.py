import json
import math

import numpy as np
import pytest
import torch

from edgekit.card import HeadSpec
from edgekit.compress.distill import DistillLoss, TeacherCache, distill, feature_loss, response_loss
from edgekit.errors import CheckpointError, ConfigError, cli_messages
from edgekit.train.losses import TaskLoss
from edgekit.train.teachers import load_teacher

DIGIT = [HeadSpec("digit", "classification", [str(i) for i in range(10)])]


def test_feature_loss_by_hand():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert feature_loss(s, t, "cosine").item() == pytest.approx((1.0 + 0.0) / 2)
    assert feature_loss(s, t, "mse").item() == pytest.approx((1 + 1 + 1 + 1) / 4)


def test_response_loss_by_hand():
    t_logits = torch.tensor([[math.log(3.0), 0.0]])
    s_logits = torch.zeros(1, 2)
    temp = 2.0
    p = torch.softmax(t_logits / temp, -1)[0].tolist()  # [sqrt3, 1] / (sqrt3 + 1)
    assert p[0] == pytest.approx(math.sqrt(3) / (math.sqrt(3) + 1))
    kl = sum(pi * math.log(pi / 0.5) for pi in p)
    assert response_loss(s_logits, t_logits, temp).item() == pytest.approx(kl * temp**2, rel=1e-6)
    assert response_loss(t_logits, t_logits, temp).item() == pytest.approx(0.0, abs=1e-6)


class _Student(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Parameter(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))

    def forward_features(self, x):
        return self.emb[: x.shape[0]]

    def forward_heads(self, emb):
        return {"digit": torch.cat([emb, torch.zeros(emb.shape[0], 7)], 1)}


def test_distill_loss_combines_the_terms():
    heads = DIGIT
    emb = torch.randn(4, 2, 5)  # 4 samples, 2 views, teacher width 5
    logits = {"digit": torch.randn(4, 2, 10)}
    cache = TeacherCache(emb, logits, {})
    loss = DistillLoss(TaskLoss(heads), cache, student_dim=3, alpha=0.3, beta=2.0, gamma=0.7, temperature=3.0)
    batch = {"image": torch.zeros(2, 3, 4, 4), "index": torch.tensor([2, 0]), "view": torch.tensor([1, 0]),
             "targets": {"digit": torch.tensor([0, 1])}}
    total, terms, outputs = loss(_Student(), batch)
    student = _Student()
    s_emb = student.forward_features(batch["image"])
    t_emb = torch.stack([emb[2, 1], emb[0, 0]])
    t_log = torch.stack([logits["digit"][2, 1], logits["digit"][0, 0]])
    feat = feature_loss(loss.proj(s_emb), t_emb)
    resp = response_loss(student.forward_heads(s_emb)["digit"], t_log, 3.0)
    task = torch.nn.functional.cross_entropy(outputs["digit"], batch["targets"]["digit"])
    assert terms["feat"].item() == pytest.approx(feat.item())
    assert terms["resp"].item() == pytest.approx(resp.item())
    assert terms["task"].item() == pytest.approx(task.item())
    assert total.item() == pytest.approx(0.3 * feat.item() + 2.0 * resp.item() + 0.7 * task.item(), rel=1e-6)
    with pytest.raises(RuntimeError, match="fixed view"):
        loss(_Student(), {**batch, "view": torch.tensor([-1, 0])})


def test_distill_end_to_end_with_trained_teacher(tiny_config):
    cfg = tiny_config("distill", name="kd", distill__teacher="timm:test_resnet", distill__teacher_epochs=1,
                      distill__views=2)
    report = distill(cfg, verbose=False)
    d = report.to_dict()
    assert d["teacher"]["trained_here"] and d["teacher"]["logits_from"] == "head"
    assert d["compression"] == pytest.approx(d["teacher"]["params"] / d["student"]["params"])
    assert "digit/acc" in d["student"]["val"] and "digit/acc" in d["baseline"]["val"]
    assert "digit/acc" in d["teacher"]["val"]
    saved = json.loads((cfg.run_dir / "distill.json").read_text())
    assert saved["student"]["params"] == d["student"]["params"]
    history = json.loads((cfg.run_dir / "history.json").read_text())
    assert {"feat", "resp", "task", "task/digit"} <= set(history[0]["losses"])
    assert (cfg.run_dir.parent.parent / "train" / "kd-nokd" / "best.pt").is_file()  # the no-KD baseline
    card = json.loads((cfg.run_dir / "card.json").read_text())
    assert card["provenance"]["teacher"] == "timm:test_resnet" and card["provenance"]["stage"] == "distill"
    # a second distill reuses the trained teacher and the cache holds every (sample, view)
    cache = torch.load(cfg.run_dir / "teacher_cache.pt", weights_only=True)
    assert cache["emb"].shape[:2] == (96, 2) and cache["emb"].abs().sum(-1).min() > 0


def test_cache_is_deterministic_and_resume_reuses_it(tiny_config, monkeypatch):
    cfg = tiny_config("distill", name="r", distill__teacher="timm:test_resnet", distill__teacher_epochs=1,
                      distill__views=2, sets=["distill.baseline=false"])
    distill(cfg, verbose=False, stop_after=1)
    first = torch.load(cfg.run_dir / "teacher_cache.pt", weights_only=True)
    from edgekit.compress.distill import TeacherCache
    from edgekit.train.supervised import resume_config

    def no_rebuild(*args, **kwargs):
        raise AssertionError("resume rebuilt the teacher cache")

    again = resume_config(cfg.run_dir, "distill")
    with monkeypatch.context() as m:
        m.setattr(TeacherCache, "build", no_rebuild)
        distill(again, resume=True, verbose=False)
    second = torch.load(cfg.run_dir / "teacher_cache.pt", weights_only=True)
    assert torch.equal(first["emb"], second["emb"])
    other = tiny_config("distill", name="r2", distill__teacher="timm:test_resnet", distill__teacher_epochs=1,
                        distill__views=2, sets=["distill.baseline=false"])
    distill(other, verbose=False, stop_after=1)
    third = torch.load(other.run_dir / "teacher_cache.pt", weights_only=True)
    assert torch.equal(first["emb"], third["emb"])  # same seed, same views, same teacher outputs


def test_timm_teacher_from_a_plain_weights_file_gets_a_probe(tiny_config, tmp_path):
    from safetensors.torch import save_file

    from edgekit.train.models import create_backbone

    torch.manual_seed(0)
    save_file(create_backbone("test_resnet").state_dict(), tmp_path / "t.safetensors")
    cfg = tiny_config("distill", name="probe", train__epochs=1, distill__teacher="timm:test_resnet",
                      distill__teacher_weights=str(tmp_path / "t.safetensors"), sets=["distill.baseline=false"])
    cfg.distill.views = 1
    report = distill(cfg, verbose=False)
    assert report.teacher["logits_from"] == "probe" and "digit/acc" in report.teacher["val"]


# -- CLIP ------------------------------------------------------------------------------------------

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random-init open_clip model of a tiny config, saved to a weights file."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    (folder / "edgekit-test-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / "edgekit-test-clip.json")
    torch.manual_seed(0)
    model = open_clip.create_model("edgekit-test-clip").eval()
    torch.save(model.state_dict(), folder / "tiny_clip.pt")
    return model, folder / "tiny_clip.pt"


def test_clip_teacher_weights_round_trip(tiny_clip):
    model, path = tiny_clip
    teacher = load_teacher("open_clip:edgekit-test-clip", str(path), DIGIT, logits="zeroshot")
    teacher.set_student_input([0.5] * 3, [0.25] * 3)
    x = torch.randn(3, 3, 16, 16)
    emb, logits = teacher(x)
    with torch.no_grad():
        expected = model.encode_image(teacher.adapt(x))
    assert emb.shape == (3, 32) and torch.allclose(emb, expected, atol=1e-6)
    assert logits["digit"].shape == (3, 10) and teacher.logits_from == "zeroshot"
    assert all(not p.requires_grad for p in teacher.parameters())


def test_clip_teacher_distills(tiny_clip, tiny_config):
    _, path = tiny_clip
    cfg = tiny_config("distill", name="clip", train__epochs=1, distill__teacher="open_clip:edgekit-test-clip",
                      distill__teacher_weights=str(path), sets=["distill.baseline=false", "distill.views=1"])
    report = distill(cfg, verbose=False)
    assert report.teacher["embed_dim"] == 32 and report.teacher["logits_from"] == "probe"
    # the probe on the CLIP teacher's embeddings reads the digits (chance: 10%), and the student learned from it
    teacher, student = report.teacher["val"]["digit/acc"], report.student["val"]["digit/acc"]
    print(f"teacher {teacher:.3f} student {student:.3f}")
    assert teacher > 0.3 and student > 0.15, (teacher, student)


def test_clip_without_weights_is_a_clear_error_not_a_hang():
    with pytest.raises(CheckpointError, match="teacher_weights='PATH'"):
        load_teacher("open_clip:ViT-B-32", None, DIGIT)
    with pytest.raises(CheckpointError, match="not in the local cache.*teacher_weights='PATH'"):
        load_teacher("open_clip:ViT-B-32:openai", None, DIGIT)
    with pytest.raises(ConfigError, match="no pretrained tag 'nope'"):
        load_teacher("open_clip:ViT-B-32:nope", None, DIGIT)
    with pytest.raises(ConfigError, match="unknown open_clip architecture"):
        load_teacher("open_clip:ViT-Q-99", "x.pt", DIGIT)
    with pytest.raises(ConfigError, match="timm:<model name> or open_clip"):
        load_teacher("hub:bert", None, DIGIT)
    with pytest.raises(ConfigError, match="teacher_weights='PATH'"):
        load_teacher("timm:resnet18", None, DIGIT)
    with cli_messages(), pytest.raises(ConfigError, match="pass --teacher-weights PATH"):  # what the CLI prints
        load_teacher("timm:resnet18", None, DIGIT)


def test_probe_handles_binary_and_unseen_classes():
    from edgekit.train.teachers import Teacher

    t = Teacher("t", torch.nn.Identity(), 4, 4, [0.0] * 3, [1.0] * 3)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 4)).astype(np.float32)
    y = (emb[:, 0] > 0).astype(np.int64) * 2  # classes 0 and 2 of three; class 1 never seen
    spec = HeadSpec("h", "classification", ["a", "b", "c"])
    t.fit_probes(emb, {"h": y}, [spec])
    pred = t.heads["h"](torch.from_numpy(emb)).argmax(1).numpy()
    assert (pred == y).mean() > 0.9 and not (pred == 1).any()


def test_distill_clips_teacher_sees_frames(tiny_config):
    """On clips the teacher runs frame by frame and its own (mean) temporal head pools the frames: its
    logits are exactly those of the clip model it was trained as."""
    import json

    from edgekit.compress.distill import distill
    from edgekit.train.checkpoint import card_of, load_checkpoint

    cfg = tiny_config("distill", data__source="moving_digits", data__frames=3, data__limit=48, train__epochs=1,
                      distill__teacher="timm:test_efficientnet", distill__teacher_epochs=1, distill__views=2,
                      distill__baseline=False)
    report = distill(cfg, verbose=False)
    teacher_card = card_of(load_checkpoint(report.teacher["weights"]))
    assert teacher_card.input.frames == 3 and teacher_card.temporal["pooling"] == "mean"
    assert report.teacher["logits_from"] == "head"
    assert report.teacher["val"]["direction/acc"] == pytest.approx(teacher_card.metrics["val"]["direction/acc"])
    student = json.loads((report.run_dir / "card.json").read_text())
    assert student["input"]["frames"] == 3 and student["temporal"]["pooling"] == "attention"
    assert set(report.student["val"]) >= {"direction/acc"}
