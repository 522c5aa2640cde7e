"""Article-gap detection: cluster what the help center failed to answer into topics writers can act on.

    engine     the clustering core (no I/O): HDBSCAN topics, labels, stable ids, impact
    embed      question vectors: all-MiniLM-L6-v2 when installed, TF-IDF + LSA otherwise
    store      the gap tables
    service    ingest, re-cluster, attach new questions, coverage; the scheduled job
    evaluate   `chatsvc eval gaps`
    routes     /api/v1/gaps          pages   /console/gaps (writers)

See docs/gaps.md.
"""
