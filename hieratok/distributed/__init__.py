"""What every part of the system shares about running on many processes.

- `process_group`: joining the torch.distributed group from a torchrun / SLURM environment, and the
  few collectives the rest of the code needs (sum, barrier, broadcast of an object).
- `randomness`: randomness keyed by sample, so a run does not depend on world size or rank.
- `signals`: SIGTERM / SIGINT / SIGUSR1 / SIGUSR2 turned into a clean stop that every rank agrees on.
"""
