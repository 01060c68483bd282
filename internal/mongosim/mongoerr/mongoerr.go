// Package mongoerr is the error a simulated command fails with, as the
// server reports it: {ok: 0, errmsg, code, codeName, errorLabels}. The
// simulator's server and its document algebra (package query) both return
// it, so it sits below both.
package mongoerr

import "fmt"

// Error is a failed command.
type Error struct {
	// Code is the server's error code; the codeName is derived from it.
	Code int32
	// Message is errmsg.
	Message string
	// Labels are the errorLabels, such as ResumableChangeStreamError.
	Labels []string
}

// Error returns the message with its code name, like the server's log line.
func (e *Error) Error() string {
	return fmt.Sprintf("(%s) %s", CodeName(e.Code), e.Message)
}

// New builds an Error with a formatted message.
func New(code int32, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// NotImplemented is the simulator's refusal of something a real server
// does but the simulator does not: code 238, with a message that names
// the simulator, so a test never mistakes it for a server's answer.
func NotImplemented(format string, args ...any) *Error {
	return New(CodeNotImplemented, "mongosim does not implement "+format, args...)
}

// CodeNotImplemented is the server's NotImplemented code.
const CodeNotImplemented int32 = 238

// CodeName returns the codeName the server sends with code.
func CodeName(code int32) string {
	if n, ok := names[code]; ok {
		return n
	}
	return fmt.Sprintf("Location%d", code)
}

// names maps codes to the codeName a real server sends. Codes that the
// fail point may inject are included so injected errors look real.
var names = map[int32]string{
	1: "InternalError", 2: "BadValue", 4: "NoSuchKey", 6: "HostUnreachable", 7: "HostNotFound", 23: "AlreadyInitialized",
	40484: "ClusterTimeFailsRateLimiter",
	9:     "FailedToParse", 11: "UserNotFound", 13: "Unauthorized", 14: "TypeMismatch",
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
	216: "ElectionInProgress", 61: "ShardKeyNotFound", 70: "ShardNotFound", 118: "NamespaceNotSharded",
	16: "InvalidLength", 27: "IndexNotFound", 28: "PathNotViable", 54: "NotSingleValueField",
	56: "EmptyFieldName", 67: "CannotCreateIndex", 85: "IndexOptionsConflict",
	86: "IndexKeySpecsConflict", 166: "CommandNotSupportedOnView", 197: "InvalidIndexSpecificationOption",
	112: "WriteConflict", 117: "ConflictingOperationInProgress", 225: "TransactionTooOld",
	251: "NoSuchTransaction", 256: "TransactionCommitted", 263: "OperationNotSupportedInTransaction",
	64: "WriteConcernFailed", 79: "UnknownReplWriteConcern", 95: "NotSecondary",
	136: "CappedPositionLost", 238: "NotImplemented", 10334: "BSONObjectTooLarge", 17419: "Location17419",
}
