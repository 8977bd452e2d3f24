"""A tiny GPT-2, built from a config (random weights, nothing downloaded), learns to copy in its own training loop,
watched by Headwatch with no code beyond `watch(...)`.

The task: 8 random tokens, then the same 8 again. The second half can be predicted only by looking back to where
the current token was last seen and reading the token after it: attention heads learn to do that ("induction
heads"), and the Attention page shows them doing it.

    pip install transformers
    python examples/watch_huggingface.py --out runs/tiny-gpt2
    headwatch --runs runs                                                # in another terminal
"""

from __future__ import annotations

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from headwatch import watch

VOCAB, HALF = 50, 8


def batch(size: int, generator: torch.Generator) -> torch.Tensor:
    first = torch.randint(1, VOCAB, (size, HALF), generator=generator)
    return torch.cat([first, first], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tiny-gpt2", help="a new or empty folder for the run")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=2 * HALF, n_embd=64, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0
    )
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = torch.Generator().manual_seed(1)
    with watch(model, optimizer, out=args.out, every=10) as watcher:
        for step in range(1, args.steps + 1):
            tokens = batch(32, data)
            output = model(input_ids=tokens, labels=tokens)
            output.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            # the second half's tokens after its first, each predicted from the position before it
            copied = (output.logits[:, HALF:-1].argmax(-1) == tokens[:, HALF + 1 :]).float().mean()
            watcher.step(output.loss, metrics={"copied": copied})
            if step % 100 == 0:
                print(f"step {step}: loss {output.loss.item():.3f}, copied {copied.item():.0%}", flush=True)


if __name__ == "__main__":
    main()
