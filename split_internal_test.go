package changestream

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// BenchmarkFragmentReassembly measures the client's part of
// WithSplitLargeEvents alone: putting a 39 MiB event back together from
// three 13 MiB fragments (no server, no decoding).
//
//	go test -run '^$' -bench FragmentReassembly -benchmem .
func BenchmarkFragmentReassembly(b *testing.B) {
	const size = 13 << 20
	frags := make([][]byte, 3)
	for i := range frags {
		tok := bsoncore.NewDocumentBuilder().AppendString("_data", "82"+strings.Repeat("0", 60)+string(rune('A'+i))).Build()
		frags[i] = bsoncore.NewDocumentBuilder().
			AppendDocument("_id", tok).
			AppendDocument("splitEvent", bsoncore.NewDocumentBuilder().AppendInt32("fragment", int32(i+1)).AppendInt32("of", 3).Build()).
			AppendString([]string{"updateDescription", "fullDocumentBeforeChange", "fullDocument"}[i], strings.Repeat("x", size)).
			Build()
	}
	cs := &ChangeStream{}
	b.SetBytes(3 * size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var whole []byte
		for n, f := range frags {
			id, _ := bsoncore.Document(f).LookupErr("_id")
			out, _, err := cs.fragment(bson.Raw(f), bson.Raw(id.Document()), int32(n+1), 3)
			if err != nil {
				b.Fatal(err)
			}
			whole = out
		}
		if len(whole) < 3*size {
			b.Fatalf("event of %d bytes", len(whole))
		}
	}
}
