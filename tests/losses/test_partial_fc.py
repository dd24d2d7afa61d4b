"""Sharded margin head (PartialFC), the group-wide BatchNorm and the data-parallel trainer
against their single-process counterparts, on CPU ranks over gloo.

One ``torch.multiprocessing.spawn`` per world size (2 and 3) runs every check for every
``shardable`` loss in ``list_losses()``; each rank saves its numbers and the references it
computed from the same seeds, and the assertions run here, in the pytest process.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from common.sampler import EpochSampler
from pytorch_impl.distributed import DistributedBatchSampler, shard_bounds
from pytorch_impl.losses import build_loss, list_losses
from pytorch_impl.losses.base import loss_class
from pytorch_impl.train import class_logits

C, D, B = 11, 6, 7  # prime sizes: uneven class and batch shards for 2 and 3 ranks
C_SAMPLED, R = 40, 0.3
BN_KINDS = ("torch0.1", "torchNone", "mxnet", "mxnet_fix_gamma")
TRAINER_LOSSES = ("arcface", "adaface", "arcface+center", "triplet", "curricularface",
                  "subcenter_arcface")


def shardable() -> list[str]:
    """Every loss that declares ``shardable``: the MarginSoftmax hooks and the two that say how
    they differ (Sub-center ArcFace, CurricularFace). Joints are not (their base is)."""
    names = [n for n in list_losses() if loss_class(n).shardable]
    assert not any("+" in n for n in names)
    assert {"subcenter_arcface", "curricularface"} <= set(names)
    return names


def _class_rows(weight, classes, k):
    """The K rows (class-major) of each of ``classes``."""
    return weight.reshape(-1, k, weight.shape[1])[classes].reshape(-1, weight.shape[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _problem(name: str, num_classes: int):
    torch.manual_seed(1234)
    loss = build_loss(name, num_classes=num_classes, embedding_size=D).double()
    with torch.no_grad():
        loss.weight.normal_()
        if hasattr(loss, "iteration"):
            loss.iteration.fill_(7)  # SphereFace lambda away from its initial 1000
        if hasattr(loss, "t"):
            loss.t.fill_(0.3)  # CurricularFace's curriculum away from its initial 0
    x = torch.nn.functional.normalize(torch.randn(B, D, dtype=torch.float64))
    x = x * torch.linspace(4.0, 24.0, B, dtype=torch.float64)[:, None]  # norms around MagFace's
    # clamp [10, 110] and AdaFace's statistics, so |x|-dependent terms have gradients
    y = torch.randint(0, num_classes, (B,))
    y[1] = y[0]  # a repeated identity in the batch
    return loss, x, y


def _reference(loss, x, y):
    xr = x.clone().requires_grad_(True)
    value = loss(xr, y)
    value.backward()
    return float(value.detach()), xr.grad.numpy(), loss.weight.grad.numpy().copy()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    from pytorch_impl.distributed import destroy_process_group, gather_rows_nograd
    from pytorch_impl.distributed import init_process_group as init
    from pytorch_impl.partial_fc import PartialFC

    init(rank, world, init_method=f"tcp://127.0.0.1:{port}", backend="gloo")
    lo, hi = shard_bounds(B, world, rank)
    res = {}
    for name in shardable():
        loss, x, y = _problem(name, C)
        ref = _reference(loss, x, y)
        loss.zero_grad()
        pfc = PartialFC(loss, sample_rate=1.0)
        xl = x[lo:hi].clone().requires_grad_(True)
        value = pfc(xl, y[lo:hi])
        value.backward()
        res[f"{name}/loss"] = np.array([float(value.detach()), ref[0]])
        res[f"{name}/gx"] = np.stack([xl.grad.numpy(), ref[1][lo:hi]])
        k = pfc.rows_per_class
        res[f"{name}/gw"] = np.stack([pfc.weight.grad.numpy(),
                                      ref[2][pfc.start * k:pfc.end * k]])
        pred = pfc.predict(x[lo:hi])
        full_pred = class_logits(x, loss.weight, loss.normalize_weight, C).argmax(1)
        res[f"{name}/pred"] = np.stack([pred.numpy(), full_pred[lo:hi].numpy()])

        # sampling: the reference is the single-process head over the union of kept classes
        loss, x, y = _problem(name, C_SAMPLED)
        pfc = PartialFC(loss, sample_rate=R, seed=5)
        xl = x[lo:hi].clone().requires_grad_(True)
        value = pfc(xl, y[lo:hi])
        value.backward()
        kept = gather_rows_nograd(pfc.last_index + pfc.start)
        sub = build_loss(name, num_classes=len(kept), embedding_size=D,
                         **{k: getattr(loss, k) for k in type(loss).hyperparameters()}).double()
        k = pfc.rows_per_class
        with torch.no_grad():
            sub.weight.copy_(_class_rows(loss.weight, kept, k))
            for key in sub.state_names:
                if key != "weight":
                    getattr(sub, key).copy_(getattr(loss, key))
        ref = _reference(sub, x, torch.searchsorted(kept, y))
        gw_full = np.zeros((C_SAMPLED, k, D))
        gw_full[kept.numpy()] = ref[2].reshape(-1, k, D)
        gw_full = gw_full.reshape(-1, D)
        res[f"{name}/s_loss"] = np.array([float(value.detach()), ref[0]])
        res[f"{name}/s_gx"] = np.stack([xl.grad.numpy(), ref[1][lo:hi]])
        res[f"{name}/s_gw"] = np.stack([pfc.weight.grad.numpy(),
                                        gw_full[pfc.start * k:pfc.end * k]])
        res[f"{name}/s_kept"] = kept.numpy()
        res[f"{name}/s_labels"] = y.numpy()
        res[f"{name}/s_count"] = np.array([len(pfc.last_index), pfc.end - pfc.start])
        again = PartialFC(loss, sample_rate=R, seed=5)
        res[f"{name}/s_repeat"] = np.stack([again.sample(y)[0].numpy(),
                                            pfc.last_index.numpy()])
    res.update(_trainer_step(rank, world))
    res.update(_sync_batchnorm(rank, world))
    np.savez(os.path.join(out, f"rank{rank}.npz"), **res)
    destroy_process_group()


def _sync_batchnorm(rank: int, world: int) -> dict:
    """Group-wide BatchNorm on this rank's rows vs the same layer on the whole batch
    (float64): torch's BatchNorm2d (replaced by SyncBatchNorm) and the backbones' MXNet-style
    one (switched in place), with and without fixed gamma."""
    from pytorch_impl.backbones import layers
    from pytorch_impl.distributed import gather_rows_nograd
    from pytorch_impl.sync_batchnorm import convert_sync_batchnorm

    out = {}
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.normal(2.0, 3.0, size=(9, 4, 3, 2)))
    g = torch.from_numpy(rng.normal(size=(9, 4, 3, 2)))
    lo, hi = shard_bounds(len(x), world, rank)
    for kind in BN_KINDS:
        nets = []
        for _ in range(2):
            torch.manual_seed(5)
            bn = {"torch0.1": lambda: torch.nn.BatchNorm2d(4, momentum=0.1),
                  "torchNone": lambda: torch.nn.BatchNorm2d(4, momentum=None),
                  "mxnet": lambda: layers.BatchNorm2d(4),
                  "mxnet_fix_gamma": lambda: layers.BatchNorm2d(4, fix_gamma=True)}[kind]()
            bn = bn.double()
            with torch.no_grad():
                if bn.weight.requires_grad:
                    bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_()
            nets.append(bn)
        single, sync = nets[0], convert_sync_batchnorm(torch.nn.Sequential(nets[1]))
        key = f"bn/{kind}"
        out[f"{key}/type"] = np.array([  # replaced, or switched in place
            type(sync[0]).__name__ == "SyncBatchNorm" if kind.startswith("torch")
            else sync[0] is nets[1] and sync[0].sync_group is not None])
        for step in range(2):  # twice: the running statistics' update rule
            xs, xl = x.clone().requires_grad_(True), x[lo:hi].clone().requires_grad_(True)
            for p in (*single.parameters(), *sync.parameters()):
                p.grad = None
            ys, yl = single(xs), sync(xl)
            (ys * g).sum().backward()
            (yl * g[lo:hi]).sum().backward()
            zero = torch.zeros(4, dtype=torch.float64)
            local_w = zero if sync[0].weight.grad is None else sync[0].weight.grad
            gw = gather_rows_nograd(local_w[None]).sum(0)  # DDP's sum over ranks
            gb = gather_rows_nograd(sync[0].bias.grad[None]).sum(0)
            single_w = zero if single.weight.grad is None else single.weight.grad
            out[f"{key}/{step}/y"] = np.stack([yl.detach().numpy(), ys.detach()[lo:hi].numpy()])
            out[f"{key}/{step}/gx"] = np.stack([xl.grad.numpy(), xs.grad[lo:hi].numpy()])
            out[f"{key}/{step}/gwb"] = np.stack([torch.cat([gw, gb]).numpy(), torch.cat(
                [single_w, single.bias.grad]).numpy()])
            out[f"{key}/{step}/running"] = np.stack([
                torch.cat([sync[0].running_mean, sync[0].running_var]).numpy(),
                torch.cat([single.running_mean, single.running_var]).numpy()])
        sync.eval()
        single.eval()
        out[f"{key}/eval"] = np.stack([sync(x[lo:hi]).detach().numpy(),
                                       single(x[lo:hi]).detach().numpy()])
    # bfloat16 activations (autocast on GPUs): statistics in float32, output in bfloat16
    sync = convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(4)))
    y16 = sync(x[lo:hi].to(torch.bfloat16))
    y32 = torch.nn.BatchNorm2d(4)(x.float())[lo:hi]
    out["bn/bf16"] = np.stack([y16.float().detach().numpy(), y32.detach().numpy()])
    out["bn/bf16_dtype"] = np.array([y16.dtype == torch.bfloat16])
    return out


def _trainer_step(rank: int, world: int) -> dict:
    """Two DistributedTrainer SGD steps on a backbone with BatchNorm vs the single-process
    Trainer on the whole batch."""
    from pytorch_impl.backbones import layers
    from pytorch_impl.distributed import DistContext
    from pytorch_impl.distributed_train import DistributedTrainer
    from pytorch_impl.train import Trainer

    out = {}
    for name in TRAINER_LOSSES:
        batches = []
        for _ in range(2):
            torch.manual_seed(99)
            net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10),
                                      layers.BatchNorm1d(10), torch.nn.Linear(10, D))
            loss = build_loss(name, num_classes=C, embedding_size=D)
            batches.append((net, loss))
        images = np.random.default_rng(3).normal(size=(8, 3, 2, 2)).astype(np.float32)
        labels = np.array([0, 0, 3, 3, 5, 5, 9, 9])
        single = Trainer(*batches[0])
        ctx = DistContext(rank, world, rank, "gloo", torch.device("cpu"))
        multi = DistributedTrainer(*batches[1], ctx)
        lo, hi = shard_bounds(len(labels), world, rank)
        for lr in (0.1, 0.05):
            single.set_lr(lr)
            multi.set_lr(lr)
            a = single.train_step(images, labels)
            b = multi.train_step(images[lo:hi], labels[lo:hi])
        out[f"train/{name}/loss"] = np.array([b.loss, a.loss])
        out[f"train/{name}/backbone"] = np.stack([  # parameters and BatchNorm's statistics
            torch.cat([p.detach().flatten().float() for p in multi.net.state_dict().values()]
                      ).numpy(),
            torch.cat([p.detach().flatten().float()
                       for p in single.backbone.state_dict().values()]).numpy()])
        if name != "triplet":
            sh = multi.loss.sharded
            k = sh.rows_per_class
            out[f"train/{name}/weight"] = np.stack([
                sh.weight.detach().numpy(),
                single.loss.weight.detach()[sh.start * k:sh.end * k].numpy()])
            if name == "curricularface":  # t advanced from the shards' target cosines
                out[f"train/{name}/t"] = np.array([float(sh.head.t), float(single.loss.t)])
    return out


def _spawn(world: int, tmp_path) -> list[dict]:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    return [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(world)]


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"world{w}")
def ranks(request, tmp_path_factory):
    return request.param, _spawn(request.param, tmp_path_factory.mktemp(f"w{request.param}"))


@pytest.mark.parametrize("name", shardable())
def test_exact_mode_matches_single_process(ranks, name):
    world, results = ranks
    for rank, res in enumerate(results):
        got, want = res[f"{name}/loss"]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (world, rank)
        np.testing.assert_allclose(*res[f"{name}/gx"], rtol=1e-9, atol=1e-12,
                                   err_msg=f"{name} grad x, rank {rank}/{world}")
        np.testing.assert_allclose(*res[f"{name}/gw"], rtol=1e-9, atol=1e-12,
                                   err_msg=f"{name} grad W, rank {rank}/{world}")
        np.testing.assert_array_equal(*res[f"{name}/pred"])
    # the shards tile the class range: every class's gradient appears exactly once
    rows = build_loss(name, num_classes=C, embedding_size=D).weight.shape[0]  # K C sub-centres
    assert sum(len(r[f"{name}/gw"][0]) for r in results) == rows


@pytest.mark.parametrize("name", shardable())
def test_sampling_keeps_positives_and_matches_restricted_softmax(ranks, name):
    world, results = ranks
    kept = results[0][f"{name}/s_kept"]
    assert set(results[0][f"{name}/s_labels"].tolist()) <= set(kept.tolist())
    assert len(set(kept.tolist())) == len(kept) < C_SAMPLED
    for res in results:
        n_kept, n_shard = res[f"{name}/s_count"]
        assert n_kept >= int(np.ceil(R * n_shard))
        np.testing.assert_array_equal(res[f"{name}/s_kept"], kept)
        got, want = res[f"{name}/s_loss"]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(*res[f"{name}/s_gx"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(*res[f"{name}/s_gw"], rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(*res[f"{name}/s_repeat"])  # same seed, same draw


@pytest.mark.parametrize("name", TRAINER_LOSSES)
def test_distributed_trainer_step_equals_single_process(ranks, name):
    world, results = ranks
    for res in results:
        got, want = res[f"train/{name}/loss"]
        assert got == pytest.approx(want, rel=1e-5)
        # float32 sums in another order, scaled by BatchNorm's 1/std: a few 1e-6 apart;
        # per-rank batch statistics put them 1e-3 to 1e-1 apart
        np.testing.assert_allclose(*res[f"train/{name}/backbone"], rtol=1e-4, atol=2e-5)
        if f"train/{name}/weight" in res:
            np.testing.assert_allclose(*res[f"train/{name}/weight"], rtol=1e-4, atol=1e-6)
        if f"train/{name}/t" in res:
            got, want = res[f"train/{name}/t"]
            assert want != 0 and got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("kind", BN_KINDS)
def test_sync_batchnorm_is_batchnorm_of_the_global_batch(ranks, kind):
    world, results = ranks
    for rank, res in enumerate(results):
        key = f"bn/{kind}"
        assert res[f"{key}/type"].all()
        for step in (0, 1):
            for part in ("y", "gx", "gwb", "running"):
                np.testing.assert_allclose(*res[f"{key}/{step}/{part}"], rtol=1e-10,
                                           atol=1e-12,
                                           err_msg=f"{part} step {step}, rank {rank}/{world}")
        np.testing.assert_allclose(*res[f"{key}/eval"], rtol=1e-10, atol=1e-12)


def test_sync_batchnorm_keeps_bfloat16_activations(ranks):
    for res in ranks[1]:
        assert res["bn/bf16_dtype"].all()
        np.testing.assert_allclose(*res["bn/bf16"], atol=0.05)  # bfloat16: 8 bits of mantissa


@pytest.mark.parametrize("world", [2, 3])
def test_batch_shards_are_disjoint_and_rebuild_the_single_process_batches(world):
    labels = np.repeat(np.arange(9), 4)
    for pk in (None, 4):
        sampler = EpochSampler(labels, 16, seed=3, pk=pk)
        shards = [list(DistributedBatchSampler(EpochSampler(labels, 16, seed=3, pk=pk), r,
                                               world).batches(1)) for r in range(world)]
        whole = list(sampler.batches(1))
        assert all(len(s) == len(whole) == len(sampler) for s in shards)
        for b, (idx, flips) in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([s[b][0] for s in shards]), idx)
            np.testing.assert_array_equal(np.concatenate([s[b][1] for s in shards]), flips)
            sizes = [len(s[b][0]) for s in shards]
            assert max(sizes) - min(sizes) <= 1


def test_shard_bounds_and_bad_arguments():
    for total in (1, 7, 11, 85_742):
        for world in (1, 2, 3, 8):
            parts = [shard_bounds(total, world, r) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    with pytest.raises(ValueError, match="rank must be in"):
        shard_bounds(10, 2, 2)
    with pytest.raises(ValueError, match="rank must be in"):
        DistributedBatchSampler(EpochSampler(np.arange(8), 4, 0), 3, 2)
    from pytorch_impl.partial_fc import PartialFC

    with pytest.raises(ValueError, match="sample_rate"):
        PartialFC("arcface", num_classes=10, embedding_size=4, sample_rate=0.0)
    with pytest.raises(ValueError, match="not a softmax-family"):
        PartialFC("triplet", num_classes=10, embedding_size=4)


def test_single_rank_partial_fc_is_the_single_process_head():
    """Without a process group one rank holds every class: same value and gradients."""
    from pytorch_impl.partial_fc import PartialFC

    loss, x, y = _problem("cosface", C)
    ref = _reference(loss, x, y)
    loss.zero_grad()
    pfc = PartialFC(loss)
    xr = x.clone().requires_grad_(True)
    value = pfc(xr, y)
    value.backward()
    assert float(value.detach()) == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(xr.grad.numpy(), ref[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pfc.weight.grad.numpy(), ref[2], rtol=1e-9, atol=1e-12)
