# Upstream side: the pool's bookkeeping (pool.py, pure) and the connection adapter.
