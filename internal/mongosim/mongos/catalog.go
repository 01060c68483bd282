package mongos

import (
	"fmt"
	"strings"
	"sync"
)

// Shard is one shard of the cluster: a replica set the routers reach at
// its members' addresses.
type Shard struct {
	// Name is the shard's name, as listShards gives it (the set's name).
	Name string
	// Hosts are the members' host:port addresses.
	Hosts []string
	// set is the replica set's name where it is not Name (the config
	// server, named "config" in getShardMap).
	set string
}

// host is the shard's connection string as listShards gives it:
// "rsName/host1,host2,...".
func (s Shard) host() string {
	set := s.Name
	if s.set != "" {
		set = s.set
	}
	return set + "/" + strings.Join(s.Hosts, ",")
}

// Catalog is the cluster's sharding metadata, standing in for the config
// server: every router of a cluster reads the same one. It holds the
// shards, each database's primary shard, where its unsharded collections
// live, and each sharded collection's key and chunks.
type Catalog struct {
	shards []Shard

	mu        sync.Mutex
	databases map[string]int // database -> index of its primary shard
	placed    []int          // how many databases each shard is primary of
	colls     map[string]*shardedColl
	config    Shard // the config server, for getShardMap
	placing   map[string]*sync.RWMutex
}

// NewCatalog returns the metadata of a cluster of the given shards.
func NewCatalog(shards []Shard) (*Catalog, error) {
	if len(shards) == 0 {
		return nil, fmt.Errorf("mongos: a cluster needs at least one shard")
	}
	seen := map[string]bool{}
	for _, s := range shards {
		if s.Name == "" || len(s.Hosts) == 0 || seen[s.Name] {
			return nil, fmt.Errorf("mongos: shard %q: each shard needs a unique name and at least one host", s.Name)
		}
		seen[s.Name] = true
	}
	return &Catalog{shards: shards, databases: map[string]int{}, colls: map[string]*shardedColl{}, placed: make([]int, len(shards))}, nil
}

// SetConfigServer names the config server getShardMap reports.
func (c *Catalog) SetConfigServer(s Shard) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.config = s
}

func (c *Catalog) configServer() Shard {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.config
}

// Shards returns the cluster's shards.
func (c *Catalog) Shards() []Shard { return c.shards }

// primaryShard returns the index of db's primary shard, choosing one the
// first time db is used: the shard that is primary of the fewest
// databases (the first of them on a tie), as a router places a new
// database on the shard with the least data.
func (c *Catalog) primaryShard(db string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.databases[db]; ok {
		return i
	}
	best := 0
	for i, n := range c.placed {
		if n < c.placed[best] {
			best = i
		}
	}
	c.databases[db] = best
	c.placed[best]++
	return best
}

// SetPrimaryShard makes shard the primary shard of db, which must not
// have one yet (as createDatabase with a primaryShard does): a test
// chooses where a database lives.
func (c *Catalog) SetPrimaryShard(db, shard string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.databases[db]; ok {
		return fmt.Errorf("mongos: database %q already has a primary shard", db)
	}
	for i, s := range c.shards {
		if s.Name == shard {
			c.databases[db] = i
			c.placed[i]++
			return nil
		}
	}
	return fmt.Errorf("mongos: no shard %q", shard)
}
