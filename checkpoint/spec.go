package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// StreamSpec describes what makes a stream's tokens its own: what it
// watches and every option that changes which events it returns or what
// they hold. Two streams with the same spec can resume from each other's
// tokens; a checkpoint records its stream's [StreamSpec.Fingerprint] and
// refuses to serve another ([SpecMismatchError]).
type StreamSpec struct {
	// Target is what the stream watches: "db.coll" for a collection,
	// "db" for a database, "" for the whole cluster.
	Target string
	// Pipeline is the stages after $changeStream, as WatchCollection
	// takes them.
	Pipeline any
	// FullDocument and FullDocumentBeforeChange are the stream's modes; ""
	// is the server's default.
	FullDocument             changestream.FullDocument
	FullDocumentBeforeChange changestream.FullDocumentBeforeChange
	// ShowExpandedEvents and SplitLargeEvents are the options of the same
	// names.
	ShowExpandedEvents bool
	SplitLargeEvents   bool
}

// Fingerprint returns a short, readable description of the spec, with the
// pipeline as a hash of its BSON: what a checkpoint stores and compares.
func (s StreamSpec) Fingerprint() (string, error) {
	var b strings.Builder
	switch {
	case s.Target == "":
		b.WriteString("cluster")
	case strings.Contains(s.Target, "."):
		b.WriteString("collection " + s.Target)
	default:
		b.WriteString("database " + s.Target)
	}
	fd, fdb := s.FullDocument, s.FullDocumentBeforeChange
	if fd == "" {
		fd = changestream.FullDocumentDefault
	}
	if fdb == "" {
		fdb = changestream.FullDocumentBeforeChangeOff
	}
	fmt.Fprintf(&b, "; fullDocument=%s; fullDocumentBeforeChange=%s; showExpandedEvents=%t; splitLargeEvents=%t; pipeline=",
		fd, fdb, s.ShowExpandedEvents, s.SplitLargeEvents)
	h, err := pipelineHash(s.Pipeline)
	if err != nil {
		return "", err
	}
	b.WriteString(h)
	return b.String(), nil
}

// pipelineHash hashes the pipeline's BSON: "none" for no stages.
func pipelineHash(pipeline any) (string, error) {
	if pipeline == nil {
		return "none", nil
	}
	t, data, err := bson.MarshalValue(pipeline)
	if err != nil {
		return "", fmt.Errorf("checkpoint: pipeline: %w", err)
	}
	if t != bson.TypeArray {
		return "", errors.New("checkpoint: the pipeline must be an array of stage documents")
	}
	if vals, err := bson.RawArray(data).Values(); err != nil {
		return "", fmt.Errorf("checkpoint: pipeline: %w", err)
	} else if len(vals) == 0 {
		return "none", nil
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:8]), nil
}
