"""A RESP writer for the nemesis test: redis-py's RedisCluster writes its keys in rounds (round r
of a key sets "r", or deletes the key when r is a multiple of 4), recording for each key the last
round acknowledged and the last one tried (an error or a timeout is an unknown outcome, never a
failure), until STOPFILE exists; then prints one line per key: KEY ACKED TRIED.
Usage: resp_writer.py PREFIX KEYS STOPFILE HOST:PORT...  (the peers' RESP addresses)"""
import collections
import logging
import os
import sys
import time

from redis.cluster import ClusterNode, RedisCluster

prefix, n, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
nodes = [ClusterNode(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[4:]]
# redis-py logs every error it retries, with its traceback; what failed is counted below instead.
logging.getLogger("redis").setLevel(logging.CRITICAL)
errors = collections.Counter()
said = {}  # the first message of each kind of error: why, when a run fails


def count(kind, e):
    errors[kind] += 1
    said.setdefault(kind, str(e)[:300])


def connect():
    """A client of the cluster, once one of the nodes answers (the faults may have taken some down)."""
    while not os.path.exists(stop):
        try:
            # One attempt per call, and few redirections: by default one call retries a home that
            # is cut off for half a minute and more (5 tries of 1 s, then the whole call again, 3
            # times), and one key whose home the faults keep away would stop this writer for the
            # whole test.
            c = RedisCluster(startup_nodes=nodes, socket_timeout=1.0, socket_connect_timeout=1.0,
                             cluster_error_retry_attempts=1)
            c.RedisClusterRequestTTL = 4
            return c
        except Exception as e:
            count(f"connecting: {type(e).__name__}", e)
            time.sleep(0.2)
    return None


rc = connect()
failed_in_a_row = 0
acked, tried = [0] * n, [0] * n
round_ = 0
while not os.path.exists(stop):
    round_ += 1
    for k in range(n):
        if os.path.exists(stop):
            break
        tried[k] = round_
        key = f"{prefix}-{k}"
        try:
            if round_ % 4 == 0:
                rc.delete(key)
            else:
                rc.set(key, str(round_))
            acked[k] = round_
            failed_in_a_row = 0
        except Exception as e:  # redis-py's errors, timeouts, a cluster it cannot map for a moment
            count(type(e).__name__, e)
            failed_in_a_row += 1
            if failed_in_a_row >= 2 * n:
                # redis-py drops each node it timed out on from the nodes it maps the cluster
                # from: after enough faults it knows none. A new client starts from all of them.
                rc = connect() or rc
                failed_in_a_row = 0
for k in range(n):
    print(f"{prefix}-{k} {acked[k]} {tried[k]}")
print(f"rounds {round_}, errors: " + ", ".join(f"{name} {times} ({said[name]!r})" for name, times in errors.most_common()),
      file=sys.stderr)
