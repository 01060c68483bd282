package changestream

import (
	"bufio"
	"bytes"
	"reflect"
	"time"
	"unsafe"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// clientSettings is what the driver's Cursor knows of the client that made
// it and exports no accessor for: the BSON registry and options that its
// Decode uses, and the client's timeoutMS, which bounds each Next of the
// driver's own Watch. A stream needs all three to behave as the driver's
// Watch does on the same client.
//
// They are read from the Cursor's unexported fields, each checked by name
// and exact type: a driver that renamed or retyped one yields known ==
// false, and the stream falls back to the Cursor's public Decode and to no
// timeout but WithTimeout's, never to a wrong value. The driver version is
// pinned in go.mod and TestClientSettingsRead fails on a driver whose
// layout no longer matches, so an upgrade cannot lose them unnoticed.
type clientSettings struct {
	registry *bson.Registry
	bsonOpts *options.BSONOptions
	timeout  time.Duration // 0: the client has no timeoutMS
	known    bool
}

// clientSettingsOf reads the settings of cur's client.
func clientSettingsOf(cur *mongo.Cursor) clientSettings {
	if cur == nil {
		return clientSettings{}
	}
	v := reflect.ValueOf(cur).Elem()
	reg, ok1 := fieldOf[*bson.Registry](v, "registry")
	opts, ok2 := fieldOf[*options.BSONOptions](v, "bsonOpts")
	timeout, ok3 := fieldOf[time.Duration](v, "clientTimeout")
	if !ok1 || !ok2 || !ok3 {
		return clientSettings{}
	}
	return clientSettings{registry: reg, bsonOpts: opts, timeout: timeout, known: true}
}

// withCollection replaces the registry and BSON options with those of
// coll, which a collection's own options may set and the driver's Watch
// on it decodes with; the aggregate runs on coll's database, whose cursor
// carries the database's.
func (s clientSettings) withCollection(coll *mongo.Collection) clientSettings {
	if coll == nil || !s.known {
		return s
	}
	v := reflect.ValueOf(coll).Elem()
	reg, ok1 := fieldOf[*bson.Registry](v, "registry")
	opts, ok2 := fieldOf[*options.BSONOptions](v, "bsonOpts")
	if !ok1 || !ok2 {
		return clientSettings{}
	}
	s.registry, s.bsonOpts = reg, opts
	return s
}

// fieldOf returns a copy of the field name of the addressable struct v if
// it exists and has exactly the type T.
func fieldOf[T any](v reflect.Value, name string) (T, bool) {
	var zero T
	f := v.FieldByName(name)
	if !f.IsValid() || f.Type() != reflect.TypeFor[T]() || !f.CanAddr() {
		return zero, false
	}
	// The field is unexported, so reflect will not hand out its value;
	// its type was checked above, which makes this read sound.
	return *(*T)(unsafe.Pointer(f.UnsafeAddr())), true
}

// docDecoder decodes documents as the driver's Cursor.Decode does, with
// the client's registry and BSON options, without the 4 KiB read buffer
// that Cursor.Decode allocates for every call: the buffer is kept and
// reset to each document. Nothing else survives from one call to the
// next, so a failed decode cannot leave state behind. Not safe for
// concurrent use; the stream's mutex guards it.
type docDecoder struct {
	settings clientSettings
	src      bytes.Reader
	buf      *bufio.Reader
}

// decode unmarshals doc into v.
func (d *docDecoder) decode(doc []byte, v any) error {
	d.src.Reset(doc)
	if d.buf == nil {
		d.buf = bufio.NewReader(&d.src)
	} else {
		d.buf.Reset(&d.src)
	}
	// bson.NewDocumentReader keeps d.buf as it is, being a bufio.Reader of
	// the default size, rather than wrapping it in a new one.
	dec := bson.NewDecoder(bson.NewDocumentReader(d.buf))
	if o := d.settings.bsonOpts; o != nil {
		if o.AllowTruncatingDoubles {
			dec.AllowTruncatingDoubles()
		}
		if o.BinaryAsSlice {
			dec.BinaryAsSlice()
		}
		if o.DefaultDocumentM {
			dec.DefaultDocumentM()
		}
		if o.DefaultDocumentMap {
			dec.DefaultDocumentMap()
		}
		if o.ObjectIDAsHexString {
			dec.ObjectIDAsHexString()
		}
		if o.UseJSONStructTags {
			dec.UseJSONStructTags()
		}
		if o.UseLocalTimeZone {
			dec.UseLocalTimeZone()
		}
		if o.ZeroMaps {
			dec.ZeroMaps()
		}
		if o.ZeroStructs {
			dec.ZeroStructs()
		}
	}
	if d.settings.registry != nil {
		dec.SetRegistry(d.settings.registry)
	}
	return dec.Decode(v)
}
