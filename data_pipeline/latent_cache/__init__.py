"""The generator's latent cache on disk: MDS rows of (latent, label, key) and their per-channel
statistics (latent_stats.json), written in parts by every rank and merged exactly.

    rows.py    the row format, the per-rank part writer and the merge
    stats.py   float64 sufficient statistics that merge by addition; latent_stats.json
"""
