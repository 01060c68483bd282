// Package shardkey is what a router and a shard both know of shard
// keys: a document's key under a key pattern, the order of keys, and
// whether a key falls in a chunk's range. Both the simulated members and
// the router use it, so that a document is placed and found by the same
// rule.
package shardkey

import (
	"errors"
	"fmt"
	"strings"

	"github.com/changestream-go/changestream/internal/mongosim/query"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Of returns the shard key of doc under pattern: one element a pattern
// field, in its order, with null for a field doc lacks (as since 4.4 a
// missing shard key field is null). It fails for an array on a key path,
// which a shard key cannot hold.
func Of(doc, pattern bson.D) (bson.D, error) {
	key := make(bson.D, 0, len(pattern))
	for _, f := range pattern {
		v, ok := pathValue(doc, f.Key)
		if !ok {
			v = nil
		}
		if _, isArr := v.(bson.A); isArr {
			return nil, fmt.Errorf("shard key cannot contain array values or array descendants: %s", f.Key)
		}
		key = append(key, bson.E{Key: f.Key, Value: v})
	}
	return key, nil
}

// pathValue follows a dotted path through embedded documents only: an
// array on the way is reported as the array, which Of refuses.
func pathValue(doc bson.D, path string) (any, bool) {
	var cur any = doc
	for _, part := range strings.Split(path, ".") {
		switch d := cur.(type) {
		case bson.D:
			v, ok := query.Lookup(d, part)
			if !ok {
				return nil, false
			}
			cur = v
		case bson.A:
			return d, true
		default:
			return nil, false
		}
	}
	return cur, true
}

// Compare orders two keys of one pattern field by field, in BSON order
// (MinKey and MaxKey at the ends).
func Compare(a, b bson.D) int {
	for i := range min(len(a), len(b)) {
		if c := query.CompareValues(a[i].Value, b[i].Value); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// InRange reports min <= key < max, a chunk's range.
func InRange(key, min, max bson.D) bool {
	return Compare(min, key) <= 0 && Compare(key, max) < 0
}

// MinKey and MaxKey return the key of pattern at the start and the end of
// the key space, a first chunk's bounds.
func MinKey(pattern bson.D) bson.D { return fill(pattern, bson.MinKey{}) }

// MaxKey returns the key of pattern past every document's.
func MaxKey(pattern bson.D) bson.D { return fill(pattern, bson.MaxKey{}) }

func fill(pattern bson.D, v any) bson.D {
	key := make(bson.D, len(pattern))
	for i, f := range pattern {
		key[i] = bson.E{Key: f.Key, Value: v}
	}
	return key
}

// ErrNotAKey is what Check says of a document that is not a key of the
// pattern: other fields, or fields in another order.
var ErrNotAKey = errors.New("not a key of the shard key pattern")

// Check reports whether key has exactly the pattern's fields, in order.
func Check(key, pattern bson.D) error {
	if len(key) != len(pattern) {
		return ErrNotAKey
	}
	for i := range key {
		if key[i].Key != pattern[i].Key {
			return ErrNotAKey
		}
	}
	return nil
}

// SamePattern reports whether two key patterns name the same fields in
// the same order with the same kinds: 1 however it is typed (1, 1.0,
// NumberLong(1)) or "hashed", as the server compares key patterns.
func SamePattern(a, b bson.D) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !sameKind(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// Extends reports whether pattern refined extends pattern current: the
// current fields first, as they are, then at least one more.
func Extends(refined, current bson.D) bool {
	return len(refined) > len(current) && SamePattern(refined[:len(current)], current)
}

func sameKind(a, b any) bool {
	if query.IsNumber(a) && query.IsNumber(b) {
		return query.NumberFloat(a) == query.NumberFloat(b)
	}
	sa, okA := a.(string)
	sb, okB := b.(string)
	return okA && okB && sa == sb
}
