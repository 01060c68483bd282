package changestream

import (
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// FullDocument is the $changeStream fullDocument mode: what update events
// carry in fullDocument. Values other than the constants are sent to the
// server unchanged, and the server's error, if any, is returned.
type FullDocument string

// FullDocument modes, as the server names them.
const (
	// FullDocumentDefault: inserts and replacements carry the document;
	// updates do not.
	FullDocumentDefault FullDocument = "default"
	// FullDocumentUpdateLookup: updates carry the document as it is when the
	// server reads the event, which may be later than the update itself.
	FullDocumentUpdateLookup FullDocument = "updateLookup"
	// FullDocumentWhenAvailable: updates carry the post-image when the
	// collection records them (changeStreamPreAndPostImages), null otherwise.
	FullDocumentWhenAvailable FullDocument = "whenAvailable"
	// FullDocumentRequired: like FullDocumentWhenAvailable, but a missing
	// post-image is a server error.
	FullDocumentRequired FullDocument = "required"
)

// FullDocumentBeforeChange is the $changeStream fullDocumentBeforeChange mode:
// whether update, replace and delete events carry the pre-image. Values other
// than the constants are sent to the server unchanged.
type FullDocumentBeforeChange string

// FullDocumentBeforeChange modes, as the server names them.
const (
	// FullDocumentBeforeChangeOff: no pre-image (the server's default).
	FullDocumentBeforeChangeOff FullDocumentBeforeChange = "off"
	// FullDocumentBeforeChangeWhenAvailable: the pre-image when the
	// collection records them, null otherwise.
	FullDocumentBeforeChangeWhenAvailable FullDocumentBeforeChange = "whenAvailable"
	// FullDocumentBeforeChangeRequired: like WhenAvailable, but a missing
	// pre-image is a server error.
	FullDocumentBeforeChangeRequired FullDocumentBeforeChange = "required"
)

// Option configures a stream opened by [WatchCollection], [WatchDatabase] or
// [WatchCluster]. Options that the server validates (conflicting start
// points, unknown modes) are sent as given; the constructor returns the
// server's error.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the resolved set of options. Pointers and nil values mean "not
// set": the field is then left out of the command, as the specification
// requires.
type config struct {
	fullDocument             *FullDocument
	fullDocumentBeforeChange *FullDocumentBeforeChange
	resumeAfter              bson.Raw
	startAfter               bson.Raw
	startAtOperationTime     *bson.Timestamp
	maxAwaitTime             *time.Duration
	batchSize                *int32
	collation                *options.Collation
	comment                  any
	showExpandedEvents       *bool
	splitLargeEvents         bool
	progress                 func(Progress)
	hooks                    []Hook
	callTimeout              time.Duration
	callTimeoutSet           bool
	progressEvery            time.Duration
	readPreference           *readpref.ReadPref
	readConcern              *readconcern.ReadConcern
	heartbeat                *heartbeatConfig

	errs []error // problems found while applying options, reported by validate
}

// newConfig applies opts and checks what is ours to check.
func newConfig(opts []Option) (*config, error) {
	c := &config{}
	for i, o := range opts {
		if o == nil {
			c.errs = append(c.errs, fmt.Errorf("option %d is nil", i))
			continue
		}
		o.apply(c)
	}
	if len(c.errs) > 0 {
		return nil, fmt.Errorf("changestream: invalid options: %w", errors.Join(c.errs...))
	}
	return c, nil
}

// WithFullDocument sets $changeStream.fullDocument (default: not sent, which
// the server treats as FullDocumentDefault).
func WithFullDocument(mode FullDocument) Option {
	return optionFunc(func(c *config) { c.fullDocument = &mode })
}

// WithFullDocumentBeforeChange sets $changeStream.fullDocumentBeforeChange
// (default: not sent, which the server treats as "off"). Pre-images exist
// only for collections created or modified with changeStreamPreAndPostImages.
func WithFullDocumentBeforeChange(mode FullDocumentBeforeChange) Option {
	return optionFunc(func(c *config) { c.fullDocumentBeforeChange = &mode })
}

// WithResumeAfter starts the stream after the event whose resume token is
// given ($changeStream.resumeAfter), typically one saved from
// [ChangeStream.ResumeToken]. A token of an invalidate event cannot be
// resumed after: use [WithStartAfter]. The token must be a BSON document.
func WithResumeAfter(token bson.Raw) Option {
	return optionFunc(func(c *config) {
		if err := checkToken("WithResumeAfter", token); err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.resumeAfter = cloneRaw(token)
	})
}

// WithStartAfter starts the stream after the event whose resume token is
// given ($changeStream.startAfter). Unlike [WithResumeAfter] it accepts the
// token of an invalidate event, to carry on after a drop or rename. Until the
// stream returns its first event, a resume also uses startAfter.
func WithStartAfter(token bson.Raw) Option {
	return optionFunc(func(c *config) {
		if err := checkToken("WithStartAfter", token); err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.startAfter = cloneRaw(token)
	})
}

// WithTimeout bounds every Next and TryNext whose ctx has no deadline by d.
// A ctx with a deadline keeps its own. An expired call returns false with
// Err wrapping context.DeadlineExceeded, and the stream stays alive.
//
// Without this option a stream bounds such calls by its client's timeoutMS
// (options.Client().SetTimeout), as the driver's Watch bounds each Next;
// with it, d replaces the client's value, and WithTimeout(0) leaves calls
// without a deadline unbounded, waiting for the next event however long it
// takes, whatever the client's timeoutMS.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, errors.New("WithTimeout: negative duration"))
			return
		}
		c.callTimeout, c.callTimeoutSet = d, true
	})
}

// WithStartAtOperationTime starts the stream at the given cluster time
// ($changeStream.startAtOperationTime): events at or after it are returned.
//
// The three start options are meant one at a time. Given together, all are
// sent, as the specification asks, and the server refuses them: opening
// fails with its error (50865 for resumeAfter with startAfter, 40674 for a
// token with a time); none is picked silently.
func WithStartAtOperationTime(t bson.Timestamp) Option {
	return optionFunc(func(c *config) { c.startAtOperationTime = &t })
}

// WithMaxAwaitTime sets how long the server waits for new events before it
// answers a getMore with an empty batch (getMore's maxTimeMS; default: not
// sent, and the server waits one second). It must be positive. When a call's
// context has an earlier deadline, the wait is shortened to fit it.
func WithMaxAwaitTime(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("WithMaxAwaitTime: %v is not positive", d))
			return
		}
		c.maxAwaitTime = &d
	})
}

// WithBatchSize sets the number of events per batch (cursor.batchSize on the
// aggregate and batchSize on every getMore; default: the server's). Zero
// makes the aggregate return no events; it must not be negative.
func WithBatchSize(n int32) Option {
	return optionFunc(func(c *config) {
		if n < 0 {
			c.errs = append(c.errs, fmt.Errorf("WithBatchSize: %d is negative", n))
			return
		}
		c.batchSize = &n
	})
}

// WithCollation sets the aggregate's collation, used by string comparisons
// in the pipeline's stages.
func WithCollation(collation *options.Collation) Option {
	return optionFunc(func(c *config) {
		if collation == nil {
			c.errs = append(c.errs, errors.New("WithCollation: nil collation"))
			return
		}
		c.collation = collation
	})
}

// WithComment attaches a comment to the aggregate and to every getMore, to
// find the stream's commands in server logs and profiles. Any BSON value.
func WithComment(comment any) Option {
	return optionFunc(func(c *config) {
		if comment == nil {
			c.errs = append(c.errs, errors.New("WithComment: nil comment"))
			return
		}
		c.comment = comment
	})
}

// WithShowExpandedEvents sets $changeStream.showExpandedEvents: report DDL
// events (create, createIndexes, dropIndexes, modify, ...) and the extra
// fields collectionUUID, operationDescription and disambiguatedPaths.
func WithShowExpandedEvents(show bool) Option {
	return optionFunc(func(c *config) { c.showExpandedEvents = &show })
}

// WithReadPreference sets the read preference used to select a server when
// the stream opens and every time it resumes (default: primary). The v2
// driver does not let a package read a collection's or client's read
// preference, so a stream does not inherit one: pass it here.
func WithReadPreference(rp *readpref.ReadPref) Option {
	return optionFunc(func(c *config) {
		if rp == nil {
			c.errs = append(c.errs, errors.New("WithReadPreference: nil read preference"))
			return
		}
		c.readPreference = rp
	})
}

// WithReadConcern sets the aggregate's readConcern (default: not sent, so
// the server's default applies). As with [WithReadPreference], a stream does
// not inherit the collection's or client's setting.
func WithReadConcern(rc *readconcern.ReadConcern) Option {
	return optionFunc(func(c *config) {
		if rc == nil {
			c.errs = append(c.errs, errors.New("WithReadConcern: nil read concern"))
			return
		}
		c.readConcern = rc
	})
}

// checkToken rejects a token that is not a whole BSON document.
func checkToken(name string, token bson.Raw) error {
	if len(token) == 0 {
		return fmt.Errorf("%s: empty resume token", name)
	}
	if err := token.Validate(); err != nil {
		return fmt.Errorf("%s: resume token is not a BSON document: %w", name, err)
	}
	return nil
}

func cloneRaw(r bson.Raw) bson.Raw {
	if r == nil {
		return nil
	}
	return append(bson.Raw(nil), r...)
}
