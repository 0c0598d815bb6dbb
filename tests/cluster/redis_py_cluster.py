"""redis-py's RedisCluster against a dhtkit cluster: it learns the map from one peer (CLUSTER SLOTS),
then writes and reads N keys, each at its own home. Prints one line of figures; exits 1 on a wrong value.
Usage: redis_py_cluster.py PORT N"""
import sys

from redis.cluster import RedisCluster

rc = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]))
n = int(sys.argv[2])
# Pipelined (redis-py groups each pipeline's commands by node), a few hundred at a time, so that
# the test's time goes to the cluster rather than to round trips.
for first in range(0, n, 500):
    p = rc.pipeline()
    for i in range(first, min(n, first + 500)):
        p.set(f"key:{i}", f"value-{i}")
    p.execute()
wrong = []
for first in range(0, n, 500):
    p = rc.pipeline()
    for i in range(first, min(n, first + 500)):
        p.get(f"key:{i}")
    for i, got in zip(range(first, n), p.execute()):
        if got != f"value-{i}".encode():
            wrong.append(i)
assert rc.get("key:1") == b"value-1"  # and one alone
gone = rc.delete("key:0")
print(f"written {n} wrong {len(wrong)} deleted {gone} exists {rc.exists('key:0')} nodes {len(rc.get_nodes())}")
sys.exit(1 if wrong else 0)
