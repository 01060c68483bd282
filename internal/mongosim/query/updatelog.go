package query

import (
	"sort"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// An update made of operators is described as the server describes it:
// from what each operator did, not from a comparison of the document
// before and after. The server's update nodes report every path they
// change to the oplog's v2 delta builder (update/v2_log_builder.cpp), and a
// change stream turns that delta into updateDescription
// (change_stream_event_transform.cpp):
//
//   - a field set in place ($set, $inc, $min, ... on an existing path) is
//     in updatedFields under its dotted path, with its new value: $set of a
//     sub-document or an array reports the whole value;
//   - a field the update created is reported at the first component that
//     did not exist, with everything below it;
//   - $push that only appends reports each new element as field.N;
//     $pop, $pull, $pullAll, $addToSet and a $push that does more report
//     the whole array;
//   - $unset and the source of $rename are in removedFields;
//   - an operator that changes nothing ($set to the same value, $pull of
//     nothing) reports nothing;
//   - per level, removed fields come first, then fields updated in place,
//     then created fields, then the paths below, each group in field-name
//     order, as the server's update tree visits them. Operator updates
//     never report TruncatedArrays: they replace the array instead.
//
// Pipeline updates are diffed, as the server diffs them (doc_diff.cpp):
// see DiffUpdate.

type logKind int

const (
	logUpdated logKind = iota + 1
	logCreated
	logRemoved
)

// UpdateLog collects the changes of one operator update.
type UpdateLog struct {
	root logNode
}

type logNode struct {
	kind     logKind
	comp     pathComponent
	children map[string]*logNode
}

// record notes what applying op at parts changed between before and after.
func (l *UpdateLog) record(op updateOp, parts []string, before, after bson.D) {
	switch op.op {
	case "$unset":
		if _, had := DocPathValue(before, parts); had {
			l.add(before, parts, logRemoved)
		}
	case "$rename":
		if _, had := DocPathValue(before, parts); had {
			l.add(before, parts, logRemoved)
			l.set(op.to, before, after)
		}
	case "$push":
		old, had := DocPathValue(before, parts)
		cur, _ := DocPathValue(after, parts)
		oa, wasArr := old.(bson.A)
		na, isArr := cur.(bson.A)
		if had && wasArr && isArr && len(na) > len(oa) && Identical(oa, na[:len(oa)]) {
			for i := len(oa); i < len(na); i++ {
				l.add(after, append(append([]string(nil), parts...), strconv.Itoa(i)), logUpdated)
			}
			return
		}
		l.set(parts, before, after)
	default:
		l.set(parts, before, after)
	}
}

// set notes a path an operator set: updated when it existed (and changed),
// created from its first missing component otherwise.
func (l *UpdateLog) set(parts []string, before, after bson.D) {
	if old, had := DocPathValue(before, parts); had {
		if cur, _ := DocPathValue(after, parts); !Identical(old, cur) {
			l.add(after, parts, logUpdated)
		}
		return
	}
	for k := 1; k <= len(parts); k++ {
		if _, had := DocPathValue(before, parts[:k]); !had {
			l.add(after, parts[:k], logCreated)
			return
		}
	}
}

// add places a change in the tree; a change below one already noted is
// part of it. doc is the document the path exists in, which tells array
// indexes from field names.
func (l *UpdateLog) add(doc bson.D, parts []string, kind logKind) {
	n := &l.root
	var cur any = doc
	for i, p := range parts {
		if n.kind != 0 {
			return
		}
		comp := pathComponent{name: p}
		switch x := cur.(type) {
		case bson.A:
			idx, _ := arrayIndex(p)
			comp = pathComponent{index: idx, isIdx: true}
			if idx < len(x) {
				cur = x[idx]
			} else {
				cur = nil
			}
		case bson.D:
			cur, _ = Lookup(x, p)
		default:
			cur = nil
		}
		if n.children == nil {
			n.children = make(map[string]*logNode)
		}
		c := n.children[p]
		if c == nil {
			c = &logNode{comp: comp}
			n.children[p] = c
		}
		if i == len(parts)-1 && c.kind == 0 && len(c.children) == 0 {
			c.kind = kind
		}
		n = c
	}
}

// Describe builds the updateDescription against the updated document, nil
// when nothing changed.
func (l *UpdateLog) Describe(after bson.D) *UpdateDescription {
	b := &diffBuilder{}
	b.ud.UpdatedFields = bson.D{}
	b.ud.RemovedFields = []string{}
	b.walk(&l.root, nil, after)
	if len(b.ud.UpdatedFields) == 0 && len(b.ud.RemovedFields) == 0 {
		return nil
	}
	if len(b.disamb) > 0 {
		b.ud.DisambiguatedPaths = b.disamb
	}
	b.ud.TruncatedArrays = []TruncatedArray{}
	return &b.ud
}

func (b *diffBuilder) walk(n *logNode, prefix []pathComponent, after bson.D) {
	keys := make([]string, 0, len(n.children))
	for k := range n.children {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, c := n.children[keys[i]].comp, n.children[keys[j]].comp
		if a.isIdx && c.isIdx {
			return a.index < c.index
		}
		return keys[i] < keys[j]
	})
	var updated, created, below []*logNode
	for _, k := range keys {
		c := n.children[k]
		switch c.kind {
		case logRemoved:
			b.ud.RemovedFields = append(b.ud.RemovedFields, b.note(child(prefix, c.comp)))
		case logUpdated:
			updated = append(updated, c)
		case logCreated:
			created = append(created, c)
		default:
			below = append(below, c)
		}
	}
	for _, c := range append(updated, created...) {
		p := child(prefix, c.comp)
		v, _ := DocPathValue(after, componentStrings(p))
		b.updated(p, v)
	}
	for _, c := range below {
		b.walk(c, child(prefix, c.comp), after)
	}
}

func componentStrings(p []pathComponent) []string {
	out := make([]string, len(p))
	for i, c := range p {
		if c.isIdx {
			out[i] = strconv.Itoa(c.index)
		} else {
			out[i] = c.name
		}
	}
	return out
}

// DiffLargerThan reports whether the delta of a pipeline update is larger
// than the updated document, in which case the server logs the whole
// document instead (doc_diff::computeOplogDiff gives up on a diff larger
// than the post-image; jstests/change_streams/pipeline_style_updates.js).
// The size is that of the delta as {u: {path: value}, d: {path: false}}
// plus the truncated arrays, within a few bytes per field of the server's
// nested encoding.
func DiffLargerThan(ud *UpdateDescription, post bson.D) bool {
	delta := bson.D{}
	if len(ud.UpdatedFields) > 0 {
		delta = append(delta, bson.E{Key: "u", Value: ud.UpdatedFields})
	}
	if len(ud.RemovedFields) > 0 {
		d := make(bson.D, len(ud.RemovedFields))
		for i, f := range ud.RemovedFields {
			d[i] = bson.E{Key: f, Value: false}
		}
		delta = append(delta, bson.E{Key: "d", Value: d})
	}
	for _, t := range ud.TruncatedArrays {
		delta = append(delta, bson.E{Key: "s" + t.Field, Value: bson.D{{Key: "a", Value: true}, {Key: "l", Value: t.NewSize}}})
	}
	a, err1 := bson.Marshal(delta)
	b, err2 := bson.Marshal(post)
	return err1 == nil && err2 == nil && len(a) > len(b)
}

// UpdateDescription is the UpdateDescription field of an update event.
type UpdateDescription struct {
	UpdatedFields      bson.D
	RemovedFields      []string
	TruncatedArrays    []TruncatedArray
	DisambiguatedPaths bson.D // nil unless a path is ambiguous
}

// TruncatedArray is an array an update shortened to NewSize elements.
type TruncatedArray struct {
	Field   string
	NewSize int32
}
