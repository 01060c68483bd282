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
	OperationInsert          OperationType = "insert"
	OperationUpdate          OperationType = "update"
	OperationReplace         OperationType = "replace"
	OperationDelete          OperationType = "delete"
	OperationDrop            OperationType = "drop"
	OperationRename          OperationType = "rename"
	OperationDropDatabase    OperationType = "dropDatabase"
	OperationInvalidate      OperationType = "invalidate"
	OperationCreate          OperationType = "create"
	OperationCreateIndexes   OperationType = "createIndexes"
	OperationDropIndexes     OperationType = "dropIndexes"
	OperationModify          OperationType = "modify"
	OperationShardCollection OperationType = "shardCollection"
)

// Namespace is an event's ns or to field.
type Namespace struct {
	DB   string `bson:"db"`
	Coll string `bson:"coll,omitempty"` // empty for database-wide events
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
	Field   string `bson:"field"`
	NewSize int32  `bson:"newSize"`
}

// SplitEvent is set on the fragments of an event too large for one BSON
// document, split by a $changeStreamSplitLargeEvent stage.
type SplitEvent struct {
	Fragment int32 `bson:"fragment"` // 1-based
	Of       int32 `bson:"of"`
}

// Event is a change event whose documents decode into T. Decode one with
// [ChangeStream.Decode] or range over [Events]. Fields the event does not
// carry keep their zero values.
type Event[T any] struct {
	// ID is the event's _id: its resume token.
	ID            bson.Raw       `bson:"_id"`
	OperationType OperationType  `bson:"operationType"`
	ClusterTime   bson.Timestamp `bson:"clusterTime"`
	// WallTime is the server's wall clock at the change (MongoDB 6.0+).
	WallTime    time.Time  `bson:"wallTime"`
	Namespace   Namespace  `bson:"ns"`
	To          *Namespace `bson:"to,omitempty"` // rename only
	DocumentKey bson.Raw   `bson:"documentKey,omitempty"`
	// FullDocument is the document after the change: always for inserts and
	// replacements, for updates as [WithFullDocument] says.
	FullDocument *T `bson:"fullDocument,omitempty"`
	// FullDocumentBeforeChange is the pre-image, as
	// [WithFullDocumentBeforeChange] says.
	FullDocumentBeforeChange *T                 `bson:"fullDocumentBeforeChange,omitempty"`
	UpdateDescription        *UpdateDescription `bson:"updateDescription,omitempty"`
	// CollectionUUID is set with showExpandedEvents.
	CollectionUUID *bson.Binary `bson:"collectionUUID,omitempty"`
	// OperationDescription describes DDL events (showExpandedEvents).
	OperationDescription bson.Raw    `bson:"operationDescription,omitempty"`
	SplitEvent           *SplitEvent `bson:"splitEvent,omitempty"`
}
