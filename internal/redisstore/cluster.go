package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// ShardsByMaster returns, on a Redis Cluster, which shards each master
// serves now (address → shard numbers, ascending): every shard lives in the
// one slot of its hash tag, so this is how the presence load is spread over
// the masters. It returns an error on a single server.
func (s *Store) ShardsByMaster(ctx context.Context) (map[string][]int, error) {
	if s.cluster == nil {
		return nil, errors.New("redisstore: shards by master: not a Redis Cluster")
	}
	ranges, err := s.cluster.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, s.fail("shards by master", err)
	}
	cmds := make([]*redis.IntCmd, s.k.shards)
	_, err = s.cluster.Pipelined(ctx, func(p redis.Pipeliner) error {
		for sh := range cmds {
			cmds[sh] = p.ClusterKeySlot(ctx, s.k.deadlines(int64(sh)))
		}
		return nil
	})
	if err != nil {
		return nil, s.fail("shards by master", err)
	}
	out := map[string][]int{}
	for sh, c := range cmds {
		slot := c.Val()
		i := slices.IndexFunc(ranges, func(r redis.ClusterSlot) bool {
			return int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0
		})
		if i < 0 {
			return nil, fmt.Errorf("redisstore: shards by master: no master serves slot %d of shard %d", slot, sh)
		}
		addr := ranges[i].Nodes[0].Addr
		out[addr] = append(out[addr], sh)
	}
	return out, nil
}
