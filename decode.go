package changestream

import (
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// eventDecoder is implemented by *Event[T]: Decode hands it the raw event
// and the cursor, whose registry decodes the documents.
type eventDecoder interface {
	decodeEvent(raw bson.Raw, c *cursor) error
}

// errSlowPath makes decodeEvent give the whole event to the registry: a
// field of a type the fast path does not expect (a pipeline that reshaped
// the event), so that every event decodes exactly as the registry decodes
// it.
var errSlowPath = errors.New("changestream: decode the event with the registry")

// decodeEvent fills e from raw. The envelope (ids, times, namespaces, the
// update description) is read straight from the bytes; only fullDocument
// and fullDocumentBeforeChange, whose type is the caller's, go through the
// client's registry. Decoding the envelope by reflection is most of what a
// consumer's Decode costs.
func (e *Event[T]) decodeEvent(raw bson.Raw, c *cursor) error {
	err := e.decodeFast(raw, c)
	if errors.Is(err, errSlowPath) {
		*e = Event[T]{}
		return c.decode(raw, e)
	}
	return err
}

func (e *Event[T]) decodeFast(raw bson.Raw, c *cursor) error {
	*e = Event[T]{}
	rest, ok := docBody(raw)
	if !ok {
		return errSlowPath
	}
	for len(rest) > 0 {
		elem, next, ok := bsoncore.ReadElement(rest)
		if !ok {
			return errSlowPath
		}
		rest = next
		v := elem.Value()
		var err error
		switch elem.Key() {
		case "_id":
			e.ID, err = rawDoc(v)
		case "operationType":
			s, ok := v.StringValueOK()
			if !ok {
				return errSlowPath
			}
			e.OperationType = OperationType(s)
		case "clusterTime":
			t, i, ok := v.TimestampOK()
			if !ok {
				return errSlowPath
			}
			e.ClusterTime = bson.Timestamp{T: t, I: i}
		case "wallTime":
			ms, ok := v.DateTimeOK()
			if !ok {
				return errSlowPath
			}
			e.WallTime = time.UnixMilli(ms).UTC()
		case "ns":
			e.Namespace, err = namespace(v)
		case "to":
			var ns Namespace
			if ns, err = namespace(v); err == nil {
				e.To = &ns
			}
		case "documentKey":
			e.DocumentKey, err = rawDoc(v)
		case "fullDocument":
			e.FullDocument, err = userDoc[T](v, c)
		case "fullDocumentBeforeChange":
			e.FullDocumentBeforeChange, err = userDoc[T](v, c)
		case "updateDescription":
			e.UpdateDescription, err = updateDescription(v)
		case "collectionUUID":
			sub, data, ok := v.BinaryOK()
			if !ok {
				return errSlowPath
			}
			e.CollectionUUID = &bson.Binary{Subtype: sub, Data: append([]byte(nil), data...)}
		case "operationDescription":
			e.OperationDescription, err = rawDoc(v)
		case "splitEvent":
			d, ok := v.DocumentOK()
			if !ok {
				return errSlowPath
			}
			f, ok1 := d.Lookup("fragment").Int32OK()
			o, ok2 := d.Lookup("of").Int32OK()
			if !ok1 || !ok2 {
				return errSlowPath
			}
			e.SplitEvent = &SplitEvent{Fragment: f, Of: o}
		case "lsid":
			e.LSID, err = rawDoc(v)
		case "txnNumber":
			n, ok := v.AsInt64OK()
			if !ok {
				return errSlowPath
			}
			e.TxnNumber = &n
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// docBody returns the elements of a document, without its length and
// terminating byte.
func docBody(raw bson.Raw) ([]byte, bool) {
	if len(raw) < 5 || raw[len(raw)-1] != 0 {
		return nil, false
	}
	return raw[4 : len(raw)-1], true
}

// rawDoc copies an embedded document; null decodes to nil, as the registry
// decodes it into a bson.Raw.
func rawDoc(v bsoncore.Value) (bson.Raw, error) {
	if v.Type == bsoncore.TypeNull {
		return nil, nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, errSlowPath
	}
	return append(bson.Raw(nil), d...), nil
}

func namespace(v bsoncore.Value) (Namespace, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return Namespace{}, errSlowPath
	}
	var ns Namespace
	if x, err := d.LookupErr("db"); err == nil {
		if ns.DB, ok = x.StringValueOK(); !ok {
			return Namespace{}, errSlowPath
		}
	}
	if x, err := d.LookupErr("coll"); err == nil {
		if ns.Coll, ok = x.StringValueOK(); !ok {
			return Namespace{}, errSlowPath
		}
	}
	return ns, nil
}

// userDoc decodes one of the caller's documents with the client's
// registry; null is nil, as the registry decodes it into a pointer.
func userDoc[T any](v bsoncore.Value, c *cursor) (*T, error) {
	if v.Type == bsoncore.TypeNull {
		return nil, nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, errSlowPath
	}
	t := new(T)
	if err := c.decode(bson.Raw(d), t); err != nil {
		return nil, err
	}
	return t, nil
}

func updateDescription(v bsoncore.Value) (*UpdateDescription, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return nil, errSlowPath
	}
	u := &UpdateDescription{}
	elems, err := d.Elements()
	if err != nil {
		return nil, errSlowPath
	}
	for _, el := range elems {
		x := el.Value()
		switch el.Key() {
		case "updatedFields":
			if u.UpdatedFields, err = rawDoc(x); err != nil {
				return nil, err
			}
		case "disambiguatedPaths":
			if u.DisambiguatedPaths, err = rawDoc(x); err != nil {
				return nil, err
			}
		case "removedFields":
			arr, ok := x.ArrayOK()
			if !ok {
				return nil, errSlowPath
			}
			vals, err := arr.Values()
			if err != nil {
				return nil, errSlowPath
			}
			u.RemovedFields = make([]string, 0, len(vals))
			for _, f := range vals {
				s, ok := f.StringValueOK()
				if !ok {
					return nil, errSlowPath
				}
				u.RemovedFields = append(u.RemovedFields, s)
			}
		case "truncatedArrays":
			arr, ok := x.ArrayOK()
			if !ok {
				return nil, errSlowPath
			}
			vals, err := arr.Values()
			if err != nil {
				return nil, errSlowPath
			}
			if len(vals) == 0 {
				// The registry leaves an empty array's slice empty, not nil.
				u.TruncatedArrays = []TruncatedArray{}
			}
			for _, t := range vals {
				td, ok := t.DocumentOK()
				if !ok {
					return nil, errSlowPath
				}
				f, ok1 := td.Lookup("field").StringValueOK()
				n, ok2 := td.Lookup("newSize").AsInt32OK()
				if !ok1 || !ok2 {
					return nil, errSlowPath
				}
				u.TruncatedArrays = append(u.TruncatedArrays, TruncatedArray{Field: f, NewSize: n})
			}
		}
	}
	return u, nil
}
