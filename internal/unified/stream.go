package unified

import (
	"context"
	"fmt"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// changeStreamUnderTest is what the runner needs from a change stream. The
// package's ChangeStream is the implementation under test; the driver's own
// mongo.ChangeStream is the control (the -driver-watch mode): a test that
// fails with both points at the simulator, one that fails only with ours
// points at the package.
type changeStreamUnderTest interface {
	Next(ctx context.Context) bool
	TryNext(ctx context.Context) bool
	Err() error
	Close(ctx context.Context) error
	Current() bson.Raw
}

// libStream adapts *changestream.ChangeStream, whose Current is a field.
type libStream struct{ cs *changestream.ChangeStream }

func (s libStream) Next(ctx context.Context) bool    { return s.cs.Next(ctx) }
func (s libStream) TryNext(ctx context.Context) bool { return s.cs.TryNext(ctx) }
func (s libStream) Err() error                       { return s.cs.Err() }
func (s libStream) Close(ctx context.Context) error  { return s.cs.Close(ctx) }
func (s libStream) Current() bson.Raw                { return s.cs.Current }

// driverStream adapts *mongo.ChangeStream.
type driverStream struct{ cs *mongo.ChangeStream }

func (s driverStream) Next(ctx context.Context) bool    { return s.cs.Next(ctx) }
func (s driverStream) TryNext(ctx context.Context) bool { return s.cs.TryNext(ctx) }
func (s driverStream) Err() error                       { return s.cs.Err() }
func (s driverStream) Close(ctx context.Context) error  { return s.cs.Close(ctx) }
func (s driverStream) Current() bson.Raw                { return s.cs.Current }

// streamArgs are createChangeStream's arguments, read once and then mapped
// to either implementation's options.
type streamArgs struct {
	pipeline                 any
	batchSize                *int32
	collation                bson.Raw
	comment                  *bson.RawValue
	fullDocument             *string
	fullDocumentBeforeChange *string
	maxAwaitTime             *time.Duration
	resumeAfter, startAfter  bson.Raw
	startAtOperationTime     *bson.Timestamp
	showExpandedEvents       *bool
}

func readStreamArgs(a *args) (*streamArgs, error) {
	sa := &streamArgs{pipeline: bson.A{}}
	if v, ok := a.get("pipeline"); ok {
		arr, ok := v.ArrayOK()
		if !ok {
			return nil, fmt.Errorf("pipeline must be an array")
		}
		vals, err := arr.Values()
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		stages := bson.A{}
		for _, st := range vals {
			d, ok := st.DocumentOK()
			if !ok {
				return nil, fmt.Errorf("pipeline stages must be documents, got a %s", st.Type)
			}
			stages = append(stages, d)
		}
		sa.pipeline = stages
	}
	if n, ok := a.int64("batchSize"); ok {
		b := int32(n)
		sa.batchSize = &b
	}
	if d, ok := a.doc("collation"); ok {
		sa.collation = d
	}
	if v, ok := a.get("comment"); ok {
		sa.comment = &v
	}
	if v, ok := a.get("fullDocument"); ok {
		s := v.StringValue()
		sa.fullDocument = &s
	}
	if v, ok := a.get("fullDocumentBeforeChange"); ok {
		s := v.StringValue()
		sa.fullDocumentBeforeChange = &s
	}
	if n, ok := a.int64("maxAwaitTimeMS"); ok {
		d := time.Duration(n) * time.Millisecond
		sa.maxAwaitTime = &d
	}
	if d, ok := a.doc("resumeAfter"); ok {
		sa.resumeAfter = d
	}
	if d, ok := a.doc("startAfter"); ok {
		sa.startAfter = d
	}
	if v, ok := a.get("startAtOperationTime"); ok {
		t, i, ok := v.TimestampOK()
		if !ok {
			return nil, fmt.Errorf("startAtOperationTime must be a timestamp")
		}
		sa.startAtOperationTime = &bson.Timestamp{T: t, I: i}
	}
	if b, ok := a.boolean("showExpandedEvents"); ok {
		sa.showExpandedEvents = &b
	}
	return sa, nil
}

// libOptions maps the arguments to the package's options.
func (sa *streamArgs) libOptions() ([]changestream.Option, error) {
	var opts []changestream.Option
	if sa.batchSize != nil {
		opts = append(opts, changestream.WithBatchSize(*sa.batchSize))
	}
	if sa.collation != nil {
		c, err := decodeCollation(sa.collation)
		if err != nil {
			return nil, err
		}
		opts = append(opts, changestream.WithCollation(c))
	}
	if sa.comment != nil {
		opts = append(opts, changestream.WithComment(*sa.comment))
	}
	if sa.fullDocument != nil {
		opts = append(opts, changestream.WithFullDocument(changestream.FullDocument(*sa.fullDocument)))
	}
	if sa.fullDocumentBeforeChange != nil {
		opts = append(opts, changestream.WithFullDocumentBeforeChange(changestream.FullDocumentBeforeChange(*sa.fullDocumentBeforeChange)))
	}
	if sa.maxAwaitTime != nil {
		opts = append(opts, changestream.WithMaxAwaitTime(*sa.maxAwaitTime))
	}
	if sa.resumeAfter != nil {
		opts = append(opts, changestream.WithResumeAfter(sa.resumeAfter))
	}
	if sa.startAfter != nil {
		opts = append(opts, changestream.WithStartAfter(sa.startAfter))
	}
	if sa.startAtOperationTime != nil {
		opts = append(opts, changestream.WithStartAtOperationTime(*sa.startAtOperationTime))
	}
	if sa.showExpandedEvents != nil {
		opts = append(opts, changestream.WithShowExpandedEvents(*sa.showExpandedEvents))
	}
	return opts, nil
}

// driverOptions maps the same arguments to the driver's Watch options.
func (sa *streamArgs) driverOptions() (*options.ChangeStreamOptionsBuilder, error) {
	o := options.ChangeStream()
	if sa.batchSize != nil {
		o.SetBatchSize(*sa.batchSize)
	}
	if sa.collation != nil {
		c, err := decodeCollation(sa.collation)
		if err != nil {
			return nil, err
		}
		o.SetCollation(*c)
	}
	if sa.comment != nil {
		o.SetComment(*sa.comment)
	}
	if sa.fullDocument != nil {
		o.SetFullDocument(options.FullDocument(*sa.fullDocument))
	}
	if sa.fullDocumentBeforeChange != nil {
		o.SetFullDocumentBeforeChange(options.FullDocument(*sa.fullDocumentBeforeChange))
	}
	if sa.maxAwaitTime != nil {
		o.SetMaxAwaitTime(*sa.maxAwaitTime)
	}
	if sa.resumeAfter != nil {
		o.SetResumeAfter(sa.resumeAfter)
	}
	if sa.startAfter != nil {
		o.SetStartAfter(sa.startAfter)
	}
	if sa.startAtOperationTime != nil {
		o.SetStartAtOperationTime(sa.startAtOperationTime)
	}
	if sa.showExpandedEvents != nil {
		o.SetShowExpandedEvents(*sa.showExpandedEvents)
	}
	return o, nil
}

func decodeCollation(d bson.Raw) (*options.Collation, error) {
	var c options.Collation
	if err := bson.Unmarshal(d, &c); err != nil {
		return nil, fmt.Errorf("collation: %w", err)
	}
	return &c, nil
}

// openStream opens a change stream on a client, database or collection
// entity, with the package (WatchCluster, WatchDatabase, WatchCollection)
// or, in control mode, with the driver's Watch.
func openStream(ctx context.Context, target any, sa *streamArgs, driverWatch bool) (changeStreamUnderTest, error) {
	if driverWatch {
		o, err := sa.driverOptions()
		if err != nil {
			return nil, err
		}
		var cs *mongo.ChangeStream
		switch t := target.(type) {
		case *clientEntity:
			cs, err = t.client.Watch(ctx, sa.pipeline, o)
		case *mongo.Database:
			cs, err = t.Watch(ctx, sa.pipeline, o)
		case *mongo.Collection:
			cs, err = t.Watch(ctx, sa.pipeline, o)
		default:
			return nil, fmt.Errorf("createChangeStream on a %T", target)
		}
		if err != nil {
			return nil, err
		}
		return driverStream{cs}, nil
	}
	opts, err := sa.libOptions()
	if err != nil {
		return nil, err
	}
	var cs *changestream.ChangeStream
	switch t := target.(type) {
	case *clientEntity:
		cs, err = changestream.WatchCluster(ctx, t.client, sa.pipeline, opts...)
	case *mongo.Database:
		cs, err = changestream.WatchDatabase(ctx, t, sa.pipeline, opts...)
	case *mongo.Collection:
		cs, err = changestream.WatchCollection(ctx, t, sa.pipeline, opts...)
	default:
		return nil, fmt.Errorf("createChangeStream on a %T", target)
	}
	if err != nil {
		return nil, err
	}
	return libStream{cs}, nil
}
