package mongosim

import (
	"errors"
	"fmt"
	"slices"
)

// Server error codes the simulator returns, with the names a real server
// gives them in codeName.
const (
	codeInternalError              int32 = 1
	codeBadValue                   int32 = 2
	codeFailedToParse              int32 = 9
	codeTypeMismatch               int32 = 14
	codeInvalidNamespace           int32 = 73
	codeIllegalOperation           int32 = 20
	codeNamespaceNotFound          int32 = 26
	codeCursorNotFound             int32 = 43
	codeNamespaceExists            int32 = 48
	codeMaxTimeMSExpired           int32 = 50
	codeDollarPrefixedFieldName    int32 = 52
	codeCommandNotFound            int32 = 59
	codeImmutableField             int32 = 66
	codeInvalidOptions             int32 = 72
	codeOperationFailed            int32 = 96
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
)

// codeNames maps codes to the codeName a real server sends. Codes that the
// fail point may inject are included so injected errors look real.
var codeNames = map[int32]string{
	1: "InternalError", 2: "BadValue", 6: "HostUnreachable", 7: "HostNotFound",
	9: "FailedToParse", 11: "UserNotFound", 13: "Unauthorized", 14: "TypeMismatch",
	20: "IllegalOperation", 26: "NamespaceNotFound", 40: "ConflictingUpdateOperators",
	43: "CursorNotFound", 48: "NamespaceExists", 50: "MaxTimeMSExpired",
	52: "DollarPrefixedFieldName", 59: "CommandNotFound", 63: "StaleShardVersion",
	66: "ImmutableField", 72: "InvalidOptions", 73: "InvalidNamespace", 89: "NetworkTimeout",
	91: "ShutdownInProgress", 96: "OperationFailed", 133: "FailedToSatisfyReadPreference",
	134: "ReadConcernMajorityNotAvailableYet", 150: "StaleEpoch", 175: "QueryPlanKilled",
	189: "PrimarySteppedDown", 234: "RetryChangeStream", 237: "CursorKilled",
	260: "InvalidResumeToken", 262: "ExceededTimeLimit", 280: "ChangeStreamFatalError",
	286: "ChangeStreamHistoryLost", 352: "UnsupportedOpQueryCommand",
	9001: "SocketException", 10107: "NotWritablePrimary", 11000: "DuplicateKey",
	11600: "InterruptedAtShutdown", 11601: "Interrupted", 11602: "InterruptedDueToReplStateChange",
	13388: "StaleConfig", 13435: "NotPrimaryNoSecondaryOk", 13436: "NotPrimaryOrSecondary",
	40324: "Location40324", 40573: "Location40573", 50738: "Location50738",
	216: "ElectionInProgress",
	16:  "InvalidLength", 27: "IndexNotFound", 28: "PathNotViable", 54: "NotSingleValueField",
	56: "EmptyFieldName", 67: "CannotCreateIndex", 85: "IndexOptionsConflict",
	86: "IndexKeySpecsConflict", 166: "CommandNotSupportedOnView", 197: "InvalidIndexSpecificationOption",
	112: "WriteConflict", 117: "ConflictingOperationInProgress", 225: "TransactionTooOld",
	251: "NoSuchTransaction", 256: "TransactionCommitted", 263: "OperationNotSupportedInTransaction",
	136: "CappedPositionLost", 238: "NotImplemented", 10334: "BSONObjectTooLarge", 17419: "Location17419",
}

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
type CommandError struct {
	// Code is the server's error code; codeName is derived from it.
	Code int32
	// Message is errmsg.
	Message string
	// Labels are the errorLabels, such as ResumableChangeStreamError.
	Labels []string
}

// Error returns the message with its code name, like the server's log line.
func (e *CommandError) Error() string {
	return fmt.Sprintf("(%s) %s", codeName(e.Code), e.Message)
}

// codeName returns the codeName for code, or "" when the server sends none.
func codeName(code int32) string {
	if n, ok := codeNames[code]; ok {
		return n
	}
	return fmt.Sprintf("Location%d", code)
}

// cmdErr builds a CommandError with a formatted message.
func cmdErr(code int32, format string, args ...any) *CommandError {
	return &CommandError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// notImplemented is the simulator's refusal of something a real server
// does but the simulator does not: NotImplemented (238), with a message
// that names the simulator, so a test never mistakes it for a server's
// answer.
func notImplemented(format string, args ...any) *CommandError {
	return cmdErr(codeNotImplemented, "mongosim does not implement "+format, args...)
}

// errCloseConnection asks the connection loop to close the socket without
// replying, as a real server does for failCommand's closeConnection.
var errCloseConnection = errors.New("mongosim: close connection")
