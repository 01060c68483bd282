// Package retryable holds the server error codes after which a read may
// be tried again, shared by the packages that reopen streams.
package retryable

import (
	"slices"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// readCodes are the codes of the Retryable Reads specification: after one
// of them, a read such as the aggregate that opens a change stream may be
// sent again.
var readCodes = []int32{6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}

// ReadCode reports whether a server error with code lets a read be tried
// again.
func ReadCode(code int32) bool { return slices.Contains(readCodes, code) }

// HasReadCode reports whether se carries one of those codes, as its own
// code or that of a write or write-concern error it holds.
func HasReadCode(se mongo.ServerError) bool {
	return slices.ContainsFunc(readCodes, func(c int32) bool { return se.HasErrorCode(int(c)) })
}
