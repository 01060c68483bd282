package mongos

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim/shardkey"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// shardedColl is what the catalog knows of a sharded collection, as
// config.collections and config.chunks hold it.
type shardedColl struct {
	ns        string
	key       bson.D // the key pattern
	unique    bool
	uuid      [16]byte
	epoch     bson.ObjectID
	timestamp bson.Timestamp
	// chunks cover the key space from MinKey to MaxKey without a gap, in
	// key order.
	chunks []*chunk
	// major is the collection's placement version: a migration moves it
	// on, a split only the minor version of the chunks it makes.
	major, minor uint32
}

// chunk is one range of a sharded collection's keys and the shard it
// lives on.
type chunk struct {
	id       bson.ObjectID
	min, max bson.D
	shard    int
	// lastmod is the chunk's version (major, minor), as config.chunks
	// gives it in one timestamp-typed field.
	lastmod bson.Timestamp
	history []chunkHistory
}

// chunkHistory records where a chunk lived from when.
type chunkHistory struct {
	since bson.Timestamp
	shard int
}

// hashed reports a single hashed field: such a collection's documents
// are placed by the hash of their key, which the simulator does not
// compute, so it stays whole on its primary shard.
func (sc *shardedColl) hashed() bool {
	for _, f := range sc.key {
		if s, ok := f.Value.(string); ok && s == "hashed" {
			return true
		}
	}
	return false
}

// chunkFor returns the chunk key falls in.
func (sc *shardedColl) chunkFor(key bson.D) *chunk {
	i, _ := slices.BinarySearchFunc(sc.chunks, key, func(c *chunk, k bson.D) int {
		if shardkey.Compare(c.max, k) <= 0 {
			return -1
		}
		if shardkey.Compare(c.min, k) > 0 {
			return 1
		}
		return 0
	})
	if i >= len(sc.chunks) {
		i = len(sc.chunks) - 1
	}
	return sc.chunks[i]
}

// shardsHolding returns the shards with at least one chunk, in shard
// order.
func (sc *shardedColl) shardsHolding() []int {
	var out []int
	for _, c := range sc.chunks {
		if !slices.Contains(out, c.shard) {
			out = append(out, c.shard)
		}
	}
	slices.Sort(out)
	return out
}

// hasChunkOn reports whether shard holds a chunk of the collection.
func (sc *shardedColl) hasChunkOn(shard int) bool {
	return slices.ContainsFunc(sc.chunks, func(c *chunk) bool { return c.shard == shard })
}

func (sc *shardedColl) nextVersion(major bool) bson.Timestamp {
	if major {
		sc.major++
		sc.minor = 0
	} else {
		sc.minor++
	}
	return bson.Timestamp{T: sc.major, I: sc.minor}
}

// placementLock returns the lock that orders ns's routed commands (read
// locked) against its chunk migrations (write locked), on every router
// of the catalog: a migration's copy, placement and delete happen while no
// command on the collection runs, so that a write never lands on the
// donor after its documents were copied, and a query never counts a
// document on both shards. The server gets there with a critical section
// at the end of a migration and by filtering orphans out of queries.
func (c *Catalog) placementLock(ns string) *sync.RWMutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.placing == nil {
		c.placing = map[string]*sync.RWMutex{}
	}
	l := c.placing[ns]
	if l == nil {
		l = &sync.RWMutex{}
		c.placing[ns] = l
	}
	return l
}

// collection returns a copy of the sharded collection ns, or nil: the
// copy is the router's snapshot of its placement for one command.
func (c *Catalog) collection(ns string) *shardedColl {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := c.colls[ns]
	if sc == nil {
		return nil
	}
	cp := *sc
	cp.chunks = make([]*chunk, len(sc.chunks))
	for i, ch := range sc.chunks {
		chc := *ch
		cp.chunks[i] = &chc
	}
	return &cp
}

// addCollection records ns as sharded on key, in one chunk on shard, at
// cluster time at.
func (c *Catalog) addCollection(ns string, key bson.D, unique bool, uuid [16]byte, shard int, at bson.Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.colls[ns] != nil {
		return
	}
	sc := &shardedColl{ns: ns, key: key, unique: unique, uuid: uuid, epoch: bson.NewObjectID(), timestamp: at, major: 1}
	sc.chunks = []*chunk{{id: bson.NewObjectID(), min: shardkey.MinKey(key), max: shardkey.MaxKey(key), shard: shard,
		lastmod: bson.Timestamp{T: 1}, history: []chunkHistory{{since: at, shard: shard}}}}
	c.colls[ns] = sc
}

// dropCollection forgets a dropped collection's placement.
func (c *Catalog) dropCollection(ns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.colls, ns)
}

// dropDatabase forgets the placement of db's collections.
func (c *Catalog) dropDatabase(db string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ns := range c.colls {
		if d, _ := nsParts(ns); d == db {
			delete(c.colls, ns)
		}
	}
}

// split splits the chunk that holds middle at middle, which must not be
// a chunk's bound already.
func (c *Catalog) split(ns string, middle bson.D) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := c.colls[ns]
	if sc == nil {
		return fmt.Errorf("collection %s is not sharded", ns)
	}
	ch := sc.chunkFor(middle)
	if shardkey.Compare(ch.min, middle) == 0 {
		return errSplitAtBound
	}
	right := &chunk{id: bson.NewObjectID(), min: middle, max: ch.max, shard: ch.shard, history: slices.Clone(ch.history)}
	ch.max = middle
	ch.lastmod = sc.nextVersion(false)
	right.lastmod = sc.nextVersion(false)
	i := slices.Index(sc.chunks, ch)
	sc.chunks = slices.Insert(sc.chunks, i+1, right)
	return nil
}

// errSplitAtBound is what splitting a chunk at its own bound fails with.
var errSplitAtBound = fmt.Errorf("cannot split on initial or final chunk's key")

// move records that the chunk starting at min now lives on shard, at
// cluster time at.
func (c *Catalog) move(ns string, min bson.D, shard int, at bson.Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := c.colls[ns]
	if sc == nil {
		return
	}
	for _, ch := range sc.chunks {
		if shardkey.Compare(ch.min, min) == 0 {
			ch.shard = shard
			ch.lastmod = sc.nextVersion(true)
			ch.history = append([]chunkHistory{{since: at, shard: shard}}, ch.history...)
			return
		}
	}
}

// shardedNamespaces returns the sharded collections' names, sorted.
func (c *Catalog) shardedNamespaces() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.colls))
	for ns := range c.colls {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}

// now is the wall clock for config documents' dates.
var now = time.Now
