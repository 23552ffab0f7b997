"""The quick start's ``--finetune-encoder`` options."""

import math

import pytest
import torch
from torch import nn


def quiet_trainer(max_epochs: int, callback):
    """A trainer with one callback and no logger, checkpoints or bars."""
    import pytorch_lightning as pl

    return pl.Trainer(
        max_epochs=max_epochs,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_finetune_options_are_parsed_and_checked(capsys):
    from examples.quick_start import parse_args

    args = parse_args(["--finetune-encoder", "--finetune-batch-size", "256"])
    assert args.finetune_encoder and args.finetune_batch_size == 256
    assert args.finetune_mini_batch == 32 and not parse_args([]).finetune_encoder
    with pytest.raises(SystemExit):
        parse_args(["--finetune-mini-batch", "0"])
    assert "argument --finetune-mini-batch: must be a positive integer" in capsys.readouterr().err


def test_finetune_model_trains_the_encoder_through_a_gradient_cache(tmp_path):
    from examples.finetune_encoder import build_finetune_class
    from quaterion.train import GradientCacheConfig
    from tests.quaterion_models.tiny_models import write_tiny_bert

    model = build_finetune_class()(write_tiny_bert(str(tmp_path / "bert"), pooling="mean"), 1e-4, 8)
    assert model.model.encoders["default"].trainable
    assert model.configure_gradient_cache() == GradientCacheConfig(mini_batch_size=8)


def test_warmup_linear_rises_then_decays_to_zero():
    from examples.finetune_encoder import warmup_linear

    # 10 steps, 2 of warm-up: 0, 1/2, then (10 - step) / 8 from 1 down to 0 after the last
    # step (transformers' get_linear_schedule_with_warmup, sentence-transformers' WarmupLinear)
    factors = [warmup_linear(step, warmup=2, total=10) for step in range(11)]
    expected = [0.0, 0.5] + [(10 - step) / 8 for step in range(2, 11)]
    assert factors == pytest.approx(expected, abs=1e-12)


def test_finetune_warmup_option_is_a_fraction(capsys):
    from examples.quick_start import parse_args

    assert parse_args([]).finetune_warmup == parse_args(["--finetune-warmup", "0"]).finetune_warmup
    assert parse_args(["--finetune-warmup", "0.25"]).finetune_warmup == 0.25
    for bad in ("1", "-0.1", "ten"):
        with pytest.raises(SystemExit):
            parse_args(["--finetune-warmup", bad])
        assert "--finetune-warmup" in capsys.readouterr().err


def test_warmup_schedules_the_learning_rate_per_step(tmp_path):
    import pytorch_lightning as pl

    from examples.finetune_encoder import build_finetune_class
    from quaterion import Quaterion
    from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
    from tests.quaterion_models.tiny_models import TEXTS, write_tiny_bert

    class Rates(pl.Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, *args):
            self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    path = write_tiny_bert(str(tmp_path / "bert"), pooling="mean")
    model = build_finetune_class()(path, 1e-3, 2, 0.5)
    samples = [SimilarityGroupSample(obj=t, group=i % 2) for i, t in enumerate(TEXTS * 2)]
    loader = GroupSimilarityDataLoader(samples, batch_size=4, drop_last=True)
    rates = Rates()
    Quaterion.fit(model, quiet_trainer(2, rates), loader)
    total = 2 * len(loader)
    warmup = math.ceil(0.5 * total)
    expected = [1e-3 * min(s / warmup, (total - s) / (total - warmup)) for s in range(total)]
    assert total >= 4 and rates.seen == pytest.approx(expected, rel=1e-9)


def test_finetune_loss_option_picks_the_triplet_variant(tmp_path, capsys):
    from examples.finetune_encoder import build_finetune_class
    from examples.quick_start import parse_args
    from quaterion.distances import Distance
    from tests.quaterion_models.tiny_models import write_tiny_bert

    assert parse_args([]).finetune_loss == "triplet"
    assert parse_args(["--finetune-loss", "soft-euclidean"]).finetune_loss == "soft-euclidean"
    with pytest.raises(SystemExit):
        parse_args(["--finetune-loss", "circle"])
    assert "--finetune-loss" in capsys.readouterr().err

    path = write_tiny_bert(str(tmp_path / "bert"), pooling="mean")
    soft = build_finetune_class()(path, 1e-4, 8, loss="soft-euclidean").configure_loss()
    config = soft.get_config_dict()
    assert config["soft"] and config["mining"] == "hard"
    assert config["distance_metric_name"] == Distance.EUCLIDEAN
    hinge = build_finetune_class()(path, 1e-4, 8).configure_loss().get_config_dict()
    assert not hinge["soft"] and hinge["margin"] == 0.5
    assert hinge["distance_metric_name"] == Distance.COSINE
    with pytest.raises(ValueError, match="loss must be one of"):
        build_finetune_class()(path, 1e-4, 8, loss="circle")


def test_soft_euclidean_loss_matches_a_naive_batch_hard_soft_margin():
    import torch

    from examples.finetune_encoder import triplet_soft_euclidean

    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    terms = []
    for i in range(7):
        dists = [float(torch.linalg.vector_norm(embeddings[i] - embeddings[j])) for j in range(7)]
        hardest_positive = max(d for j, d in enumerate(dists) if groups[j] == groups[i] and j != i)
        hardest_negative = min(d for j, d in enumerate(dists) if groups[j] != groups[i])
        terms.append(math.log1p(math.exp(hardest_positive - hardest_negative)))  # softplus
    expected = torch.tensor(sum(terms) / len(terms), dtype=torch.float64)
    torch.testing.assert_close(triplet_soft_euclidean()(embeddings, groups), expected)


def test_finetune_interpolate_option_is_a_weight_in_the_unit_interval(capsys):
    from examples.finetune_encoder import DEFAULT_INTERPOLATION
    from examples.quick_start import parse_args

    assert parse_args([]).finetune_interpolate == DEFAULT_INTERPOLATION
    for good in ("0", "0.8", "1"):
        assert parse_args(["--finetune-interpolate", good]).finetune_interpolate == float(good)
    for bad in ("1.01", "-0.1", "most", "nan"):
        with pytest.raises(SystemExit):
            parse_args(["--finetune-interpolate", bad])
        assert "--finetune-interpolate" in capsys.readouterr().err


def test_finetune_interpolate_moves_the_weights_back_towards_the_pretrained_ones(tmp_path):
    """The run with ``--finetune-interpolate 0.25`` ends on the formula applied to the
    pre-trained weights and those of the same run with plain fine-tuning (``1``)."""
    from examples.finetune_encoder import build_finetune_class, finetune_encoder
    from examples.quick_start import parse_args
    from quaterion.dataset import SimilarityGroupSample
    from tests.quaterion_models.tiny_models import TEXTS, write_tiny_bert

    path = write_tiny_bert(str(tmp_path / "bert"), pooling="mean")
    samples = [SimilarityGroupSample(obj=t, group=i % 3) for i, t in enumerate(TEXTS * 3)]
    pretrained = build_finetune_class()(path, 1e-3, 4).model.state_dict()
    ends = {}
    for alpha in ("1", "0.25"):
        options = ["--finetune-batch-size", "6", "--finetune-mini-batch", "4"]
        options += ["--finetune-lr", "1e-2", "--finetune-epochs", "2"]
        args = parse_args(options + ["--finetune-interpolate", alpha, "--seed", "5"])
        result = finetune_encoder(args, path, samples, samples)
        ends[alpha] = result["model"].model.state_dict()
    name = next(n for n in pretrained if n.endswith("query.weight"))
    moved = ends["1"][name] - pretrained[name]
    assert moved.abs().max() > 1e-3
    for key, tensor in ends["0.25"].items():
        if tensor.is_floating_point():
            expected = 0.75 * pretrained[key].double() + 0.25 * ends["1"][key].double()
            torch.testing.assert_close(tensor.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dropout", [True, False])
def test_finetune_dropout_option_sets_the_training_mode(tmp_path, dropout):
    """transformers loads its models in eval mode; the fit trains the trainable encoder in
    train mode (dropout on) unless ``--finetune-no-dropout`` keeps it in eval mode."""
    import pytorch_lightning as pl

    from examples.finetune_encoder import build_finetune_class
    from examples.quick_start import parse_args
    from quaterion import Quaterion
    from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
    from tests.quaterion_models.tiny_models import TEXTS, write_tiny_bert

    class Modes(pl.Callback):
        def __init__(self):
            self.eval_modules = []
            self.dropouts = []

        def on_train_batch_start(self, trainer, pl_module, *args):
            self.eval_modules.append(
                [n for n, m in pl_module.model.named_modules() if not m.training]
            )
            self.dropouts.append(
                [m.training for m in pl_module.model.modules() if isinstance(m, nn.Dropout)]
            )

    path = write_tiny_bert(str(tmp_path / "bert"), pooling="mean")
    model = build_finetune_class()(path, 1e-3, 2, dropout=dropout)
    loaded_in_eval = [n for n, m in model.model.named_modules() if not m.training]
    assert loaded_in_eval  # as transformers loads it
    samples = [SimilarityGroupSample(obj=t, group=i % 2) for i, t in enumerate(TEXTS * 2)]
    modes = Modes()
    Quaterion.fit(model, quiet_trainer(1, modes), GroupSimilarityDataLoader(samples, batch_size=4))
    if dropout:
        assert modes.eval_modules == [[], []]  # the whole model trains in train mode
    else:
        assert len(modes.dropouts) == 2 and modes.dropouts[0]  # the model has dropouts
        assert modes.dropouts == [[False] * len(modes.dropouts[0])] * 2  # all of them off
    assert parse_args([]).finetune_dropout
    assert not parse_args(["--finetune-no-dropout"]).finetune_dropout


def test_hard_euclidean_loss_matches_a_naive_batch_hard_triplet_loss_with_margin_5():
    """sentence-transformers' BatchHardTripletLoss, worked by hand on unit vectors (the
    pytorch-metric-learning distance normalises them; MiniLM's vectors are unit already)."""
    from examples.finetune_encoder import triplet_hard_euclidean

    generator = torch.Generator().manual_seed(4)
    embeddings = nn.functional.normalize(torch.randn(8, 5, generator=generator), dim=1)
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    terms = []
    for i in range(8):
        dists = [float(torch.linalg.vector_norm(embeddings[i] - embeddings[j])) for j in range(8)]
        hardest_positive = max(d for j, d in enumerate(dists) if groups[j] == groups[i] and j != i)
        hardest_negative = min(d for j, d in enumerate(dists) if groups[j] != groups[i])
        terms.append(hardest_positive - hardest_negative + 5.0)
    expected = torch.tensor(sum(terms) / len(terms))
    torch.testing.assert_close(triplet_hard_euclidean()(embeddings, groups), expected)


def test_weight_decay_spares_biases_and_layer_norm_weights(tmp_path):
    from examples.finetune_encoder import WEIGHT_DECAY, build_finetune_class, decay_groups
    from tests.quaterion_models.tiny_models import write_tiny_bert

    model = build_finetune_class()(write_tiny_bert(str(tmp_path / "bert"), pooling="mean"), 1e-4, 8)
    decayed, exempt = decay_groups(model.model)
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (WEIGHT_DECAY, 0.0)
    names = {id(p): n for n, p in model.model.named_parameters()}
    exempt_names = sorted(names[id(p)] for p in exempt["params"])
    expected = sorted(n for n in names.values() if n.endswith("bias") or "LayerNorm" in n)
    assert exempt_names == expected and any("LayerNorm.weight" in n for n in expected)
    assert len(decayed["params"]) + len(exempt["params"]) == len(names)
    assert all(names[id(p)].endswith("weight") for p in decayed["params"])


def test_sampler_option_builds_group_cycle_batches(capsys):
    from examples.finetune_encoder import training_loader
    from examples.quick_start import parse_args
    from quaterion.dataset import GroupCycleBatchSampler, SimilarityGroupSample

    samples = [SimilarityGroupSample(obj=f"text {i}", group=i % 4) for i in range(24)]
    args = parse_args(
        ["--finetune-sampler", "group-cycle", "--finetune-batch-size", "6", "--seed", "3"]
    )
    batches = [labels["groups"].tolist() for _, _, labels in training_loader(args, samples)]
    reference = GroupCycleBatchSampler([s.group for s in samples], batch_size=6, seed=3)
    assert batches == [[samples[i].group for i in batch] for batch in reference]
    assert len(batches) == 4
    random_args = parse_args(["--finetune-batch-size", "6"])
    assert random_args.finetune_sampler == "random"
    assert len(training_loader(random_args, samples)) == 4
    with pytest.raises(SystemExit):
        parse_args(["--finetune-sampler", "balanced"])
    with pytest.raises(SystemExit):
        parse_args(["--finetune-samples-per-group", "0"])
    assert (
        "argument --finetune-samples-per-group: must be a positive integer"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        parse_args(["--finetune-epochs", "0"])
    assert "argument --finetune-epochs: must be a positive integer" in capsys.readouterr().err


def test_clip_option_reaches_the_trainer(tmp_path, capsys):
    import pytorch_lightning as pl

    from examples.finetune_encoder import finetune_encoder
    from examples.quick_start import parse_args
    from quaterion.dataset import SimilarityGroupSample
    from tests.quaterion_models.tiny_models import TEXTS, write_tiny_bert

    seen = []

    class Clip(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            seen.append(trainer.gradient_clip_val)

    for bad in ("-1", "inf", "x"):
        with pytest.raises(SystemExit):
            parse_args(["--finetune-clip", bad])
        assert "--finetune-clip" in capsys.readouterr().err
    path = write_tiny_bert(str(tmp_path / "bert"), pooling="mean")
    samples = [SimilarityGroupSample(obj=t, group=i % 2) for i, t in enumerate(TEXTS * 2)]
    options = ["--finetune-batch-size", "4", "--finetune-mini-batch", "2", "--finetune-epochs"]
    for clip in ("0.5", "0"):
        args = parse_args(options + ["1", "--finetune-clip", clip])
        finetune_encoder(args, path, samples, samples, callbacks=[Clip()])
    assert seen == [0.5, None]


def test_recipe_options_train_the_model_of_sentence_transformers_loop(tmp_path):
    """``hard-euclidean`` + ``group-cycle`` + clipping + warm-up through the gradient cache
    end on the weights sentence-transformers' own ``fit`` loop reaches on the same data
    from the same seed (dropout off in both, so the batch order is the only randomness)."""
    from transformers import AutoModel

    from benchmarks.finetune_quality import StRecipe, sentence_transformers_run
    from examples.finetune_encoder import finetune_encoder
    from examples.quick_start import parse_args
    from quaterion.dataset import SimilarityGroupSample
    from tests.quaterion_models.tiny_models import TEXTS, write_tiny_bert

    path = write_tiny_bert(str(tmp_path / "bert"), pooling="mean", normalize=True)
    # 6 topics x 4 texts: 3 batches of 4 topics x 2 texts per epoch
    samples = [SimilarityGroupSample(obj=f"{TEXTS[i % 4]} {i}", group=i % 6) for i in range(24)]
    folder = str(tmp_path / "st")
    st_recipe = StRecipe(batch_size=8, epochs=2, lr=1e-3, dropout=False)
    sentence_transformers_run(path, samples, seed=7, folder=folder, recipe=st_recipe)
    recipe = ["--finetune-loss", "hard-euclidean", "--finetune-sampler", "group-cycle"]
    recipe += ["--finetune-clip", "1", "--finetune-warmup", "0.1", "--finetune-lr", "1e-3"]
    recipe += ["--finetune-batch-size", "8", "--finetune-mini-batch", "3"]
    recipe += ["--finetune-epochs", "2", "--finetune-no-dropout", "--seed", "7"]
    result = finetune_encoder(parse_args(recipe), path, samples, samples)
    ours = result["model"].model.encoders["default"].embedder.model.state_dict()
    theirs = AutoModel.from_pretrained(folder).state_dict()
    start = AutoModel.from_pretrained(path).state_dict()
    moved = 0
    for name, tensor in theirs.items():
        if name.endswith("key.bias"):
            # zero gradient in exact arithmetic (softmax ignores a per-query constant): Adam
            # turns rounding into full steps, on either side
            continue
        torch.testing.assert_close(ours[name], tensor, rtol=1e-4, atol=2e-6)
        moved += int((tensor - start[name]).abs().max() > 1e-4)
    # every tensor the loss reaches moved: all but the two key biases and the unused pooler
    assert moved == len(theirs) - 4
