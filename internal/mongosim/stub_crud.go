package mongosim

// Stubs replaced by the CRUD work (crud_*.go, ddl.go, match.go, update.go).

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

func notImplemented(cc *cmdCtx) (bsoncore.Document, error) {
	return nil, cmdErr(CodeCommandNotFound, "no such command: '%s'", cc.name)
}

var (
	handleListDatabases    = notImplemented
	handleListCollections  = notImplemented
	handleCreate           = notImplemented
	handleDrop             = notImplemented
	handleDropDatabase     = notImplemented
	handleRenameCollection = notImplemented
	handleInsert           = notImplemented
	handleUpdate           = notImplemented
	handleDelete           = notImplemented
	handleFind             = notImplemented
	handleFindAndModify    = notImplemented
)

// matcher reports whether a document matches a compiled query filter.
type matcher func(doc bson.D) bool

// compileFilter compiles a query filter ({a: 1, b: {$gt: 2}, $or: [...]}).
// A bad filter is a *CommandError with the real server's code.
func compileFilter(filter bson.D) (matcher, error) { return func(bson.D) bool { return true }, nil }

// projector applies a compiled projection and returns a new document.
type projector func(doc bson.D) bson.D

// compileProjection compiles a find/$project projection ({a: 1, _id: 0}).
func compileProjection(spec bson.D) (projector, error) { return func(d bson.D) bson.D { return d }, nil }

// runPlainAggregate runs an aggregate whose pipeline does not start with
// $changeStream.
func runPlainAggregate(cc *cmdCtx) (bsoncore.Document, error) {
	return nil, cmdErr(CodeUnrecognizedPipelineStage, "aggregation without $changeStream is not supported")
}
