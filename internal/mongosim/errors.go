package mongosim

import (
	"errors"
	"slices"

	"github.com/changestream-go/changestream/internal/mongosim/mongoerr"
)

// Server error codes the simulator returns, with the names a real server
// gives them in codeName.
const (
	codeInternalError              int32 = 1
	codeBadValue                   int32 = 2
	codeNoSuchKey                  int32 = 4
	codeFailedToParse              int32 = 9
	codeTypeMismatch               int32 = 14
	codeInvalidNamespace           int32 = 73
	codeIllegalOperation           int32 = 20
	codeAlreadyInitialized         int32 = 23
	codeNamespaceNotFound          int32 = 26
	codeCursorNotFound             int32 = 43
	codeNamespaceExists            int32 = 48
	codeMaxTimeMSExpired           int32 = 50
	codeDollarPrefixedFieldName    int32 = 52
	codeCommandNotFound            int32 = 59
	codeImmutableField             int32 = 66
	codeInvalidOptions             int32 = 72
	codeOperationFailed            int32 = 96
	codeNamespaceNotSharded        int32 = 118
	codeConflictingUpdateOperators int32 = 40
	codeCursorKilled               int32 = 237
	codeInterruptedAtShutdown      int32 = 11600
	codeInvalidResumeToken         int32 = 260
	codeChangeStreamFatalError     int32 = 280
	codeChangeStreamHistoryLost    int32 = 286
	codeUnsupportedOpQueryCommand  int32 = 352
	codeDuplicateKey               int32 = 11000
	codeUnrecognizedPipelineStage  int32 = 40324
	codeChangeStreamNotReplSet     int32 = 40573
	codeCursorInUseByOtherSession  int32 = 50738
	codeNotImplemented             int32 = 238
	codeUnauthorized               int32 = 13
	codeBSONObjectTooLarge         int32 = 10334
	codeCappedPositionLost         int32 = 136

	// Replication.
	codeWriteConcernFailed              int32 = 64
	codeUnknownReplWriteConcern         int32 = 79
	codeNotSecondary                    int32 = 95
	codePrimarySteppedDown              int32 = 189
	codeExceededTimeLimit               int32 = 262
	codeNotWritablePrimary              int32 = 10107
	codeInterruptedDueToReplStateChange int32 = 11602
	codeNotPrimaryNoSecondaryOk         int32 = 13435
)

// resumableChangeStreamCodes are the codes for which a real server adds the
// ResumableChangeStreamError label to a failed change-stream getMore.
var resumableChangeStreamCodes = []int32{
	6, 7, 63, 89, 91, 133, 150, 189, 234, 262, 9001, 10107, 11600, 11602, 13388, 13435, 13436,
}

// isResumableChangeStreamCode reports whether code is in resumableChangeStreamCodes.
func isResumableChangeStreamCode(code int32) bool {
	return slices.Contains(resumableChangeStreamCodes, code)
}

// Error labels used by the server.
const (
	labelResumableChangeStreamError    = "ResumableChangeStreamError"
	labelNonResumableChangeStreamError = "NonResumableChangeStreamError"
)

// CommandError is a failed command as the server reports it:
// {ok: 0, errmsg, code, codeName, errorLabels}.
type CommandError = mongoerr.Error

// codeName returns the codeName the server sends with code.
func codeName(code int32) string { return mongoerr.CodeName(code) }

// cmdErr builds a CommandError with a formatted message.
func cmdErr(code int32, format string, args ...any) *CommandError {
	return mongoerr.New(code, format, args...)
}

// notImplemented refuses what the simulator does not implement, naming it
// (mongoerr.NotImplemented).
func notImplemented(format string, args ...any) *CommandError {
	return mongoerr.NotImplemented(format, args...)
}

// errCloseConnection asks the connection loop to close the socket without
// replying, as a real server does for failCommand's closeConnection.
var errCloseConnection = errors.New("mongosim: close connection")
