package query

import "github.com/changestream-go/changestream/internal/mongosim/mongoerr"

// The algebra fails with the server's errors, named as the server names
// them; these keep its code readable.

// CommandError is a failed command.
type CommandError = mongoerr.Error

func cmdErr(code int32, format string, args ...any) *CommandError {
	return mongoerr.New(code, format, args...)
}

func notImplemented(format string, args ...any) *CommandError {
	return mongoerr.NotImplemented(format, args...)
}

// Error codes the algebra returns.
const (
	codeInternalError              int32 = 1
	codeBadValue                   int32 = 2
	codeFailedToParse              int32 = 9
	codeTypeMismatch               int32 = 14
	codeIllegalOperation           int32 = 20
	codeConflictingUpdateOperators int32 = 40
	codeDollarPrefixedFieldName    int32 = 52
	codeImmutableField             int32 = 66
	codeInvalidOptions             int32 = 72
	codeUnrecognizedPipelineStage  int32 = 40324
)
