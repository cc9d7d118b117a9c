"""Course-pack indexer: materials -> chunks -> local MiniLM vectors in Chroma + BM25, and hybrid retrieval.

Run it as ``python -m services.indexer {build,watch,query,stats}``.
"""

import os

# Set before anything imports NumPy: a BLAS thread pool only fights the other processes on 2 cores,
# and the MiniLM forward pass is fastest single-threaded here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# The tokenizer's worker threads only spin for our small batches; one thread tokenises fast enough.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
