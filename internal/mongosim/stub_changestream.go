package mongosim

// Stubs replaced by the change-stream work (aggregate.go, changestream.go, token.go).

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

var handleAggregate = notImplemented

type changeStreamSource struct{}

func (*changeStreamSource) nextBatch(*cmdCtx, int, time.Duration, <-chan struct{}) (batch, error) {
	return batch{exhausted: true}, nil
}

var _ bsoncore.Document
