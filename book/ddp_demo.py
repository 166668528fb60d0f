"""Data parallelism for real: DistributedDataParallel on 2 CPU processes with the gloo backend.

Launch it the way you would on GPUs, with torchrun (here through ``python -m torch.distributed.run``):

    python -m torch.distributed.run --nproc_per_node=2 --master_addr=127.0.0.1 \
        --master_port=29511 book/ddp_demo.py --out result.json

torchrun starts one process per rank and gives each RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT in its environment. Every rank takes its own shard of
a batch, DDP averages the gradients across ranks during ``backward()``, and each
rank then checks that its gradients and weights equal those of ONE process
training on the combined batch. :func:`launch` does all this from Python, with a
free loopback port and a timeout, and returns rank 0's report.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

PER_RANK, STEPS, LR = 16, 3, 0.5


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def make_batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g))
            for _ in range(STEPS)]


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().flatten() for t in tensors])


def worker(out: str | None) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # reads MASTER_ADDR/PORT, RANK, WORLD_SIZE
    batches = make_batches(PER_RANK * world)       # the combined batch of every step, same on all ranks
    mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)

    model = DDP(make_model())                      # DDP broadcasts rank 0's weights: replicas start equal
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    by_hand = make_model()                         # the same thing written out: all_reduce, then divide
    opt_hand = torch.optim.SGD(by_hand.parameters(), lr=LR)
    single = make_model()                          # the reference: one process, the combined batch
    opt_single = torch.optim.SGD(single.parameters(), lr=LR)

    report = []
    for X, y in batches:
        opt.zero_grad()
        F.cross_entropy(model(X[mine]), y[mine]).backward()   # gradients averaged across ranks here
        grad_ddp = flat(p.grad for p in model.parameters())
        opt.step()

        opt_hand.zero_grad()
        F.cross_entropy(by_hand(X[mine]), y[mine]).backward()
        for p in by_hand.parameters():
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world
        grad_hand = flat(p.grad for p in by_hand.parameters())
        opt_hand.step()

        opt_single.zero_grad()
        F.cross_entropy(single(X[mine]), y[mine]).backward()  # without DDP: this rank's shard only
        grad_local = flat(p.grad for p in single.parameters())
        opt_single.zero_grad()
        F.cross_entropy(single(X), y).backward()
        grad_single = flat(p.grad for p in single.parameters())
        opt_single.step()

        w_ddp = flat(model.parameters())
        w_all = [torch.empty_like(w_ddp) for _ in range(world)]
        dist.all_gather(w_all, w_ddp)              # every rank's replica, to check they agree
        report.append({
            "grad_vs_single": (grad_ddp - grad_single).abs().max().item(),
            "grad_vs_by_hand": (grad_ddp - grad_hand).abs().max().item(),
            "weights_vs_single": (w_ddp - flat(single.parameters())).abs().max().item(),
            "replicas_differ_by": max((w - w_all[0]).abs().max().item() for w in w_all),
            "local_grad_vs_single": (grad_local - grad_single).abs().max().item(),
        })
    if rank == 0:
        result = {"world_size": world, "backend": dist.get_backend(), "per_rank": PER_RANK,
                  "combined": PER_RANK * world, "steps": report,
                  "max_abs_difference": max(max(r["grad_vs_single"], r["weights_vs_single"],
                                                r["replicas_differ_by"], r["grad_vs_by_hand"]) for r in report)}
        print(f"rank 0 of {world} ({dist.get_backend()}): {PER_RANK} examples per rank, "
              f"{PER_RANK * world} combined, {STEPS} SGD steps")
        for i, r in enumerate(report):
            print(f"step {i}: max |grad DDP - grad single| = {r['grad_vs_single']:.1e}, "
                  f"max |w DDP - w single| = {r['weights_vs_single']:.1e}, "
                  f"replicas differ by {r['replicas_differ_by']:.1e}")
        if out:
            Path(out).write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int = 2, timeout: float = 120.0) -> dict:
    """Run this script as a real ``nproc``-process job with torchrun on loopback; return rank 0's report.

    The job runs in its own process group, which is killed if it outlives ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", "--max_restarts=0",
               str(Path(__file__).resolve()), "--out", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RuntimeError(f"the DDP job did not finish within {timeout:.0f} s and was killed") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"the DDP job failed (exit code {proc.returncode}):\n{log[-3000:]}")
        result = json.loads(out.read_text())
        result["log"] = log
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write rank 0's report here as JSON")
    worker(parser.parse_args().out)
