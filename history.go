package changestream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// HistoryHeadroom is how much history a position has left: the time
// between it and the oldest entry the deployment's oplog still holds.
// When the oldest entry passes the position, a stream can no longer
// resume from it (ErrHistoryLost). Measured by [Headroom].
type HistoryHeadroom struct {
	// Known is false where the deployment does not say (Reason says why):
	// through mongos, whose shards' oplogs are not readable through a
	// router, or a server that refuses serverStatus's oplog section.
	Known  bool
	Reason string
	// Oldest and Newest are the times of the oldest and the newest entry
	// the history holds.
	Oldest, Newest bson.Timestamp
	// Margin is the position's time less the oldest entry's, to the
	// second: how far the oldest entry has to move before the position is
	// lost. Negative once it is lost.
	Margin time.Duration
	// Lost reports that the oldest entry is past the position already.
	Lost bool
	// Window is the newest entry's time less the oldest's: how much time
	// the history holds. Margin against Window says how close the edge
	// is: at the current write rate the history holds Window, so the
	// position is lost in about Margin.
	Window time.Duration
	// Source is the replica set (its name) whose history was measured,
	// the shard with the least headroom for [HeadroomOf].
	Source string
}

// Headroom measures pos against the history of the replica set client is
// connected to: the oldest and newest oplog entries its primary reports
// ({serverStatus: 1, oplog: 1}). Through mongos it returns Known false:
// a router cannot read its shards' oplogs; measure each shard with
// [HeadroomOf] and clients of the shards themselves. An error is a
// failed command; a server that refuses the section is Known false.
func Headroom(ctx context.Context, client *mongo.Client, pos Position) (HistoryHeadroom, error) {
	if pos.ClusterTime.IsZero() {
		return HistoryHeadroom{}, errors.New("changestream: Headroom: the position has no cluster time")
	}
	var hello struct {
		Msg     string `bson:"msg"`
		SetName string `bson:"setName"`
	}
	admin := client.Database("admin")
	if err := admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return HistoryHeadroom{}, fmt.Errorf("changestream: Headroom: hello: %w", err)
	}
	if hello.Msg == "isdbgrid" {
		return HistoryHeadroom{Reason: "through mongos: a router cannot read its shards' oplogs; measure each shard with HeadroomOf and clients of the shards"}, nil
	}
	var status struct {
		Oplog *struct {
			Latest   bson.Timestamp `bson:"latestOptime"`
			Earliest bson.Timestamp `bson:"earliestOptime"`
		} `bson:"oplog"`
	}
	err := admin.RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}, {Key: "oplog", Value: 1}}).Decode(&status)
	var se mongo.ServerError
	switch {
	case errors.As(err, &se):
		return HistoryHeadroom{Reason: "serverStatus refused: " + err.Error()}, nil
	case err != nil:
		return HistoryHeadroom{}, fmt.Errorf("changestream: Headroom: serverStatus: %w", err)
	case status.Oplog == nil || status.Oplog.Earliest.IsZero():
		return HistoryHeadroom{Reason: "the server reports no oplog (not a replica-set member)"}, nil
	}
	oldest, newest := status.Oplog.Earliest, status.Oplog.Latest
	return HistoryHeadroom{
		Known: true, Oldest: oldest, Newest: newest, Source: hello.SetName, Lost: pos.ClusterTime.Before(oldest),
		Margin: time.Duration(int64(pos.ClusterTime.T)-int64(oldest.T)) * time.Second,
		Window: time.Duration(int64(newest.T)-int64(oldest.T)) * time.Second,
	}, nil
}

// HeadroomOf measures pos against each of clients (on a sharded cluster,
// one connected to each shard's replica set) and returns the least
// headroom: the shard that will lose the position first. It is Known only
// if every one is.
func HeadroomOf(ctx context.Context, clients []*mongo.Client, pos Position) (HistoryHeadroom, error) {
	if len(clients) == 0 {
		return HistoryHeadroom{}, errors.New("changestream: HeadroomOf: no clients")
	}
	var least HistoryHeadroom
	for i, c := range clients {
		h, err := Headroom(ctx, c, pos)
		if err != nil {
			return HistoryHeadroom{}, err
		}
		if !h.Known {
			return h, nil
		}
		if i == 0 || lessHeadroom(h, least) {
			least = h
		}
	}
	return least, nil
}

// lessHeadroom orders by what is lost first: a lost position, then the
// smaller margin, then (within the second) the later oldest entry.
func lessHeadroom(a, b HistoryHeadroom) bool {
	switch {
	case a.Lost != b.Lost:
		return a.Lost
	case a.Margin != b.Margin:
		return a.Margin < b.Margin
	}
	return b.Oldest.Before(a.Oldest)
}
