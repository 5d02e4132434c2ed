"""Reading shards for training and evaluation, resumable at any world size.

    loader.py          build_loader (the entry point; its docstring is the contract)
    mds_loader.py, wds_loader.py          the two readers and their resume guarantees
    decode.py, augment.py                 bytes -> uint8; crop/flip from (seed, epoch, key), collate
    batch_wait.py, capacity.py            bounded waits for a batch; too-little-data errors up front
    streaming_world.py, shm_cleanup.py    streaming's rank/world detection; stale /dev/shm cleanup
"""
