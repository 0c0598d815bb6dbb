"""redis-py's RedisCluster against a dhtkit cluster: it learns the map from one peer (CLUSTER SLOTS),
then writes and reads N keys, each at its own home. Prints one line of figures; exits 1 on a wrong value.
Usage: redis_py_cluster.py PORT N"""
import sys

from redis.cluster import RedisCluster

rc = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]))
n = int(sys.argv[2])
for i in range(n):
    rc.set(f"key:{i}", f"value-{i}")
wrong = [i for i in range(n) if rc.get(f"key:{i}") != f"value-{i}".encode()]
gone = rc.delete("key:0")
print(f"written {n} wrong {len(wrong)} deleted {gone} exists {rc.exists('key:0')} nodes {len(rc.get_nodes())}")
sys.exit(1 if wrong else 0)
