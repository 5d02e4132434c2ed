"""`hieratok prepare`: images -> MDS or WebDataset shards, in parallel, resumable, with a manifest.

    pipeline.py        plan -> parallel part workers -> MDS index merge -> manifest (run_prepare)
    options.py         the command's options, checked
    sources.py, embedded.py, keys.py      what is read (folder tree, file list, `embedded`) and its keys
    image_prep.py      one image -> stored bytes, or a skip with its reason
    shard_plan.py      which sample goes to which shard; one shard per part
    encode_pool.py, part_writer.py        workers encode images; this process writes each part
    shard_writers.py   the MDS / WDS writers
"""
