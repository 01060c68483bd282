package changestream

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// OperationType is an event's operationType.
type OperationType string

// Operation types the server reports. Streams opened with
// [WithShowExpandedEvents] also see the DDL types; others may appear on
// newer servers.
const (
	// OperationInsert: a document was inserted; FullDocument holds it.
	OperationInsert OperationType = "insert"
	// OperationUpdate: a document was updated; UpdateDescription says how.
	OperationUpdate OperationType = "update"
	// OperationReplace: a document was replaced; FullDocument holds the new one.
	OperationReplace OperationType = "replace"
	// OperationDelete: a document was deleted; DocumentKey names it.
	OperationDelete OperationType = "delete"
	// OperationDrop: a collection was dropped.
	OperationDrop OperationType = "drop"
	// OperationRename: a collection was renamed; To is its new name.
	OperationRename OperationType = "rename"
	// OperationDropDatabase: a database was dropped.
	OperationDropDatabase OperationType = "dropDatabase"
	// OperationInvalidate: the stream ends here; carry on with [WithStartAfter]
	// and this event's token.
	OperationInvalidate OperationType = "invalidate"
	// OperationCreate: a collection or view was created (expanded events).
	OperationCreate OperationType = "create"
	// OperationCreateIndexes: indexes were created (expanded events).
	OperationCreateIndexes OperationType = "createIndexes"
	// OperationDropIndexes: indexes were dropped (expanded events).
	OperationDropIndexes OperationType = "dropIndexes"
	// OperationModify: collection options were changed (expanded events).
	OperationModify OperationType = "modify"
	// OperationShardCollection: a collection was sharded (expanded events).
	OperationShardCollection OperationType = "shardCollection"
)

// Namespace is an event's ns or to field.
type Namespace struct {
	// DB is the database name.
	DB string `bson:"db"`
	// Coll is the collection name, empty for database-wide events.
	Coll string `bson:"coll,omitempty"`
}

// UpdateDescription is an update event's updateDescription.
type UpdateDescription struct {
	// UpdatedFields maps dotted paths to their new values.
	UpdatedFields bson.Raw `bson:"updatedFields"`
	// RemovedFields lists the dotted paths that were removed.
	RemovedFields []string `bson:"removedFields"`
	// TruncatedArrays lists arrays that lost trailing elements.
	TruncatedArrays []TruncatedArray `bson:"truncatedArrays,omitempty"`
	// DisambiguatedPaths maps paths whose parts could be read as either a
	// field name or an array index to their parts (showExpandedEvents only).
	DisambiguatedPaths bson.Raw `bson:"disambiguatedPaths,omitempty"`
}

// TruncatedArray is one entry of UpdateDescription.TruncatedArrays.
type TruncatedArray struct {
	// Field is the array's dotted path.
	Field string `bson:"field"`
	// NewSize is the array's length after the update.
	NewSize int32 `bson:"newSize"`
}

// SplitEvent is set on the fragments of an event too large for one BSON
// document, split by a $changeStreamSplitLargeEvent stage.
type SplitEvent struct {
	// Fragment is this fragment's number, from 1.
	Fragment int32 `bson:"fragment"`
	// Of is the number of fragments of the event.
	Of int32 `bson:"of"`
}

// Event is a change event whose documents decode into T. Decode one with
// [ChangeStream.Decode] or range over [Events]. Fields the event does not
// carry keep their zero values.
type Event[T any] struct {
	// ID is the event's _id: its resume token.
	ID bson.Raw `bson:"_id"`
	// OperationType says what changed.
	OperationType OperationType `bson:"operationType"`
	// ClusterTime is the change's time in the oplog: the order of events.
	ClusterTime bson.Timestamp `bson:"clusterTime"`
	// WallTime is the server's wall clock at the change (MongoDB 6.0+).
	WallTime time.Time `bson:"wallTime"`
	// Namespace is where the change happened.
	Namespace Namespace `bson:"ns"`
	// To is a renamed collection's new name.
	To *Namespace `bson:"to,omitempty"`
	// DocumentKey is the changed document's _id (and shard key, if any).
	DocumentKey bson.Raw `bson:"documentKey,omitempty"`
	// FullDocument is the document after the change: always for inserts and
	// replacements, for updates as [WithFullDocument] says.
	FullDocument *T `bson:"fullDocument,omitempty"`
	// FullDocumentBeforeChange is the pre-image, as
	// [WithFullDocumentBeforeChange] says.
	FullDocumentBeforeChange *T `bson:"fullDocumentBeforeChange,omitempty"`
	// UpdateDescription says what an update changed.
	UpdateDescription *UpdateDescription `bson:"updateDescription,omitempty"`
	// CollectionUUID is set with showExpandedEvents.
	CollectionUUID *bson.Binary `bson:"collectionUUID,omitempty"`
	// OperationDescription describes DDL events (showExpandedEvents).
	OperationDescription bson.Raw `bson:"operationDescription,omitempty"`
	// SplitEvent marks a fragment of an event split for size.
	SplitEvent *SplitEvent `bson:"splitEvent,omitempty"`
	// LSID is the logical session of the transaction the change was part
	// of ({id, uid}); nil for a change outside a transaction.
	LSID bson.Raw `bson:"lsid,omitempty"`
	// TxnNumber is that transaction's number within its session; nil for
	// a change outside a transaction. The events of one transaction share
	// ClusterTime, LSID and TxnNumber.
	TxnNumber *int64 `bson:"txnNumber,omitempty"`
}
