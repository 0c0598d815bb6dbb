"""A RESP writer for the nemesis test: redis-py's RedisCluster writes its keys in rounds (round r
of a key sets "r", or deletes the key when r is a multiple of 4), recording for each key the last
round acknowledged and the last one tried (an error or a timeout is an unknown outcome, never a
failure), until STOPFILE exists; then prints one line per key: KEY ACKED TRIED.
Usage: resp_writer.py PREFIX KEYS STOPFILE HOST:PORT...  (the peers' RESP addresses)"""
import os
import sys
import time

from redis.cluster import ClusterNode, RedisCluster

prefix, n, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
nodes = [ClusterNode(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[4:]]
rc = None
while rc is None and not os.path.exists(stop):  # the faults may have taken a peer down already
    try:
        rc = RedisCluster(startup_nodes=nodes, socket_timeout=1.0, socket_connect_timeout=1.0)
    except Exception:
        time.sleep(0.2)
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
        except Exception:  # redis-py's errors, timeouts, a cluster it cannot map for a moment
            pass
for k in range(n):
    print(f"{prefix}-{k} {acked[k]} {tried[k]}")
