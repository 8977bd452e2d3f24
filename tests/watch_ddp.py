"""Run by tests/test_watch.py under torchrun: two CPU processes (gloo) train one DistributedDataParallel model,
watched. Only rank 0 may write the run folder given as argv[1]."""

import sys

import torch
import torch.distributed as dist
from torch import nn

from engine.watch import watch

dist.init_process_group("gloo")
torch.manual_seed(0)
layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False),
                                                          nn.Linear(8, 1)))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
data = torch.Generator().manual_seed(dist.get_rank())
with watch(model, optimizer, sys.argv[1], every=2) as watcher:
    for _ in range(10):
        x = torch.randn(4, 5, 8, generator=data)
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        watcher.step(loss)
dist.destroy_process_group()
