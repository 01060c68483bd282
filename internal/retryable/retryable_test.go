package retryable

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestReadCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code int32
		want bool
	}{
		{10107, true},  // NotWritablePrimary
		{11602, true},  // InterruptedDueToReplStateChange
		{91, true},     // ShutdownInProgress
		{11000, false}, // DuplicateKey
		{43, false},    // CursorNotFound: the resume rules' business, not a retry
		{0, false},
	} {
		assert.Equal(t, tc.want, ReadCode(tc.code), "code %d", tc.code)
	}
}

func TestHasReadCode(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		err  mongo.ServerError
		want bool
	}{
		"command error":        {mongo.CommandError{Code: 13435}, true},
		"other command error":  {mongo.CommandError{Code: 2}, false},
		"write concern error":  {mongo.WriteException{WriteConcernError: &mongo.WriteConcernError{Code: 189}}, true},
		"duplicate key writes": {mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 11000}}}, false},
	} {
		assert.Equal(t, tc.want, HasReadCode(tc.err), name)
	}
}
