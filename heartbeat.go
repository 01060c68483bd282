package changestream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Through mongos an event is released only once every shard has promised
// nothing earlier will come from it, and an idle shard promises only at
// its periodic no-op write (periodicNoopIntervalSecs, 10 s by default): a
// quiet shard delays every event of a busy one by up to that long. A
// heartbeat bounds the delay, as change-data-capture tools do for quiet
// sources: a small write on each shard at an interval, which moves the
// shard's oplog on.

// WithHeartbeat makes the stream write to coll, once every interval, one
// small document on each shard of a sharded cluster (an update of the
// document whose _id is the shard's name, upserted), so that an idle
// shard holds the stream's events back for about interval instead of up
// to its no-op interval. coll must have been set up with PrepareHeartbeat,
// which shards it so that each shard holds one of those documents; it may
// be in any database, and the stream's caller never sees its events (the
// stream filters them out on the server). On a deployment that is not a
// sharded cluster there is nothing to bound: the stream writes nothing.
//
// The cost to the deployment is one update of one ~60-byte document per
// shard per interval (at 1 s, 86,400 oplog entries a day per shard), made
// by the stream's own goroutine, which Close stops. Write errors do not
// affect the stream: they are counted in [Stats].HeartbeatErrors, the last
// kept in Stats.HeartbeatErr. interval must be at least 100 ms, coll not
// nil.
func WithHeartbeat(coll *mongo.Collection, interval time.Duration) Option {
	return optionFunc(func(c *config) {
		switch {
		case coll == nil:
			c.errs = append(c.errs, errors.New("WithHeartbeat: nil collection"))
		case interval < 100*time.Millisecond:
			c.errs = append(c.errs, fmt.Errorf("WithHeartbeat: interval %v is below 100ms", interval))
		default:
			c.heartbeat = &heartbeatConfig{coll: coll, every: interval}
		}
	})
}

// heartbeatConfig is WithHeartbeat's setting.
type heartbeatConfig struct {
	coll  *mongo.Collection
	every time.Duration
}

// filterStage is the $match that keeps the heartbeat's events from the
// caller: first in the pipeline, before stages that could drop ns.
func (h *heartbeatConfig) filterStage() bson.D {
	return bson.D{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "ns.db", Value: bson.D{{Key: "$ne", Value: h.coll.Database().Name()}}}},
		bson.D{{Key: "ns.coll", Value: bson.D{{Key: "$ne", Value: h.coll.Name()}}}},
	}}}}}
}

// shardNames lists the cluster's shards, sorted; a deployment that is not
// a sharded cluster has none (listShards runs only on mongos).
func shardNames(ctx context.Context, client *mongo.Client) ([]string, error) {
	var hello struct {
		Msg string `bson:"msg"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return nil, err
	}
	if hello.Msg != "isdbgrid" {
		return nil, nil
	}
	var out struct {
		Shards []struct {
			ID string `bson:"_id"`
		} `bson:"shards"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "listShards", Value: 1}}).Decode(&out); err != nil {
		return nil, fmt.Errorf("listShards: %w", err)
	}
	names := make([]string, len(out.Shards))
	for i, s := range out.Shards {
		names[i] = s.ID
	}
	slices.Sort(names)
	return names, nil
}

// PrepareHeartbeat sets coll up for WithHeartbeat on a sharded cluster:
// it shards coll on {_id: 1}, splits it at each shard's name and moves
// the chunk holding each name to that shard, so that the document whose
// _id is a shard's name lives on it. It needs the privileges of
// shardCollection, split and moveChunk, and runs once (again, it changes
// nothing that is already in place, but a shard added since gets its
// chunk only if coll's chunks allow the split). On a deployment that is
// not a sharded cluster it does nothing.
func PrepareHeartbeat(ctx context.Context, coll *mongo.Collection) error {
	if coll == nil {
		return errors.New("changestream: PrepareHeartbeat: nil collection")
	}
	client := coll.Database().Client()
	names, err := shardNames(ctx, client)
	if err != nil {
		return fmt.Errorf("changestream: PrepareHeartbeat: %w", err)
	}
	if len(names) == 0 {
		return nil
	}
	admin := client.Database("admin")
	ns := coll.Database().Name() + "." + coll.Name()
	run := func(cmd bson.D) error { return admin.RunCommand(ctx, cmd).Err() }
	if err := run(bson.D{{Key: "shardCollection", Value: ns}, {Key: "key", Value: bson.D{{Key: "_id", Value: 1}}}}); err != nil {
		return fmt.Errorf("changestream: PrepareHeartbeat: sharding %s: %w", ns, err)
	}
	for i, name := range names {
		if i > 0 {
			// An existing bound is no error: it was split before.
			_ = run(bson.D{{Key: "split", Value: ns}, {Key: "middle", Value: bson.D{{Key: "_id", Value: name}}}})
		}
		if err := run(bson.D{{Key: "moveChunk", Value: ns}, {Key: "find", Value: bson.D{{Key: "_id", Value: name}}}, {Key: "to", Value: name}}); err != nil {
			return fmt.Errorf("changestream: PrepareHeartbeat: placing %s's chunk of %s: %w", name, ns, err)
		}
	}
	return nil
}

// heartbeat is the goroutine WithHeartbeat starts: it writes until stop.
type heartbeat struct {
	cfg  *heartbeatConfig
	stop context.CancelFunc
	done sync.WaitGroup
}

// startHeartbeat starts the writer of cs's heartbeat, if it has one and
// the deployment is a sharded cluster.
func (cs *ChangeStream) startHeartbeat(ctx context.Context) error {
	h := cs.cfg.heartbeat
	if h == nil {
		return nil
	}
	names, err := shardNames(ctx, h.coll.Database().Client())
	if err != nil {
		return fmt.Errorf("changestream: WithHeartbeat: %w", err)
	}
	if len(names) == 0 {
		return nil
	}
	hctx, stop := context.WithCancel(context.Background())
	hb := &heartbeat{cfg: h, stop: stop}
	hb.done.Add(1)
	go func() {
		defer hb.done.Done()
		t := time.NewTicker(h.every)
		defer t.Stop()
		for {
			cs.beat(hctx, h, names)
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	cs.heartbeat = hb
	return nil
}

// beat writes each shard's heartbeat document once.
func (cs *ChangeStream) beat(ctx context.Context, h *heartbeatConfig, names []string) {
	for _, name := range names {
		wctx, cancel := context.WithTimeout(ctx, h.every)
		_, err := h.coll.UpdateOne(wctx, bson.D{{Key: "_id", Value: name}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: time.Now()}}}}, options.UpdateOne().SetUpsert(true))
		cancel()
		if ctx.Err() != nil {
			return
		}
		cs.stateMu.Lock()
		if err != nil {
			cs.stats.HeartbeatErrors++
			cs.stats.HeartbeatErr = err
		} else {
			cs.stats.Heartbeats++
		}
		cs.stateMu.Unlock()
	}
}

// stopHeartbeat stops the writer and waits for it.
func (cs *ChangeStream) stopHeartbeat() {
	if hb := cs.heartbeat; hb != nil {
		hb.stop()
		hb.done.Wait()
	}
}
