"""A RESP writer for the nemesis test: redis-py's RedisCluster writes its keys in rounds (round r
of a key sets "r", or deletes the key when r is a multiple of 4), recording for each key the last
round acknowledged and the last one tried (an error or a timeout is an unknown outcome, never a
failure), until STOPFILE exists; then prints one line per key: KEY ACKED TRIED.
Usage: resp_writer.py HOST PORT PREFIX KEYS STOPFILE"""
import os
import sys

from redis.cluster import RedisCluster

host, port, prefix, n, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
rc = RedisCluster(host=host, port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
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
