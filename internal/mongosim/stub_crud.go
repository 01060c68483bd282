package mongosim

// Stubs replaced by the CRUD work (crud_*.go, ddl.go, match.go, update.go).

import "go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

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
