"""A small nn.TransformerEncoder learns a toy task in its own training loop, watched by Headwatch.

The task: a sequence of 12 digits; is its first digit repeated later on? Answering takes attention: a head has to
compare the first position with every other one. Run it, and watch it live in the dashboard:

    python examples/watch_transformer.py --out runs/toy-transformer     # add --tensorboard for TensorBoard files
    headwatch --runs runs                                                # in another terminal

Under torchrun (CPU processes, gloo), the model is wrapped in DistributedDataParallel and only rank 0 writes:

    torchrun --nproc_per_node=2 examples/watch_transformer.py --out runs/toy-transformer-ddp
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn

from headwatch import watch

DIGITS, LENGTH, WIDTH, HEADS = 10, 12, 32, 4


class RepeatClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(DIGITS, WIDTH)
        self.position = nn.Parameter(torch.randn(LENGTH, WIDTH) * 0.1)
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, digits: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, 2)
        x = self.encoder(self.embed(digits) + self.position)  # (B, T, C)
        return self.head(x[:, 0])  # read out at the first digit: the one to look for


def batch(size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the sequences repeat their first digit somewhere later, half never do."""
    digits = torch.randint(0, DIGITS, (size, LENGTH), generator=generator)
    repeats = torch.rand(size, generator=generator) < 0.5
    first = digits[:, :1]
    others = digits[:, 1:]
    others = torch.where(others == first, (others + 1) % DIGITS, others)  # no repeat yet
    where = torch.randint(1, LENGTH, (size,), generator=generator)
    digits = torch.cat([first, others], 1)
    digits[repeats, where[repeats]] = first[repeats, 0]
    return digits, repeats.long()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/toy-transformer", help="a new or empty folder for the run")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files")
    args = parser.parse_args()
    distributed = "WORLD_SIZE" in os.environ  # started by torchrun
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    torch.set_num_threads(1)  # a model this small trains fastest on one thread, and two compete with each process
    torch.manual_seed(0)  # the same starting weights in every process
    device = torch.device("cuda" if torch.cuda.is_available() and not distributed else "cpu")  # gloo: CPU
    model: nn.Module = RepeatClassifier().to(device)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    data = torch.Generator().manual_seed(1 + rank)  # each process trains on its own batches
    with watch(model, optimizer, out=args.out, every=10, tensorboard=args.tensorboard) as watcher:
        for step in range(1, args.steps + 1):
            digits, labels = (t.to(device) for t in batch(64, data))
            logits = model(digits)
            loss = nn.functional.cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            accuracy = (logits.argmax(-1) == labels).float().mean()
            watcher.step(loss, metrics={"accuracy": accuracy})
            if rank == 0 and step % 100 == 0:
                print(f"step {step}: loss {loss.item():.3f}, accuracy {accuracy.item():.0%}", flush=True)
    if distributed:
        dist.barrier()  # no process tears the group down while another still trains or writes
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
