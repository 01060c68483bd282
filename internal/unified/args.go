package unified

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// args reads the fields of an operation's arguments (or of an entity's
// description) and remembers which were read, so that done can refuse an
// argument the runner does not implement instead of silently ignoring it:
// an ignored argument would make a test pass for the wrong reason.
type args struct {
	raw  bson.Raw
	used map[string]bool
	errs []error
}

func newArgs(doc bson.Raw) *args {
	return &args{raw: doc, used: make(map[string]bool)}
}

// get returns the raw value of key.
func (a *args) get(key string) (bson.RawValue, bool) {
	a.used[key] = true
	if a.raw == nil {
		return bson.RawValue{}, false
	}
	v, err := a.raw.LookupErr(key)
	if err != nil {
		return bson.RawValue{}, false
	}
	return v, true
}

func (a *args) str(key string) string {
	v, ok := a.get(key)
	if !ok {
		return ""
	}
	s, ok := v.StringValueOK()
	if !ok {
		a.errs = append(a.errs, fmt.Errorf("argument %s: expected a string, got %s", key, v.Type))
	}
	return s
}

func (a *args) boolean(key string) (bool, bool) {
	v, ok := a.get(key)
	if !ok {
		return false, false
	}
	b, ok := v.BooleanOK()
	if !ok {
		a.errs = append(a.errs, fmt.Errorf("argument %s: expected a boolean, got %s", key, v.Type))
	}
	return b, ok
}

func (a *args) int64(key string) (int64, bool) {
	v, ok := a.get(key)
	if !ok {
		return 0, false
	}
	if !isNumber(v.Type) {
		a.errs = append(a.errs, fmt.Errorf("argument %s: expected a number, got %s", key, v.Type))
		return 0, false
	}
	return int64(asFloat(v)), true
}

func (a *args) doc(key string) (bson.Raw, bool) {
	v, ok := a.get(key)
	if !ok {
		return nil, false
	}
	d, ok := v.DocumentOK()
	if !ok {
		a.errs = append(a.errs, fmt.Errorf("argument %s: expected a document, got %s", key, v.Type))
	}
	return d, ok
}

// strings reads an array of strings.
func (a *args) strings(key string) ([]string, bool) {
	return arrayArg(a, key, "strings", bson.RawValue.StringValueOK)
}

// docs reads an array of documents.
func (a *args) docs(key string) ([]bson.Raw, bool) {
	return arrayArg(a, key, "documents", bson.RawValue.DocumentOK)
}

// arrayArg reads an array argument whose elements conv accepts; what names
// the expected elements in the error for one it refuses.
func arrayArg[T any](a *args, key, what string, conv func(bson.RawValue) (T, bool)) ([]T, bool) {
	v, ok := a.get(key)
	if !ok {
		return nil, false
	}
	arr, ok := v.ArrayOK()
	if !ok {
		a.errs = append(a.errs, fmt.Errorf("argument %s: expected an array, got %s", key, v.Type))
		return nil, false
	}
	vals, _ := arr.Values()
	out := make([]T, 0, len(vals))
	for _, e := range vals {
		x, ok := conv(e)
		if !ok {
			a.errs = append(a.errs, fmt.Errorf("argument %s: expected %s, got a %s", key, what, e.Type))
			return nil, false
		}
		out = append(out, x)
	}
	return out, true
}

// done reports type errors and any argument that no reader asked for.
func (a *args) done() error {
	var unknown []string
	if a.raw != nil {
		elems, _ := a.raw.Elements()
		for _, e := range elems {
			if !a.used[e.Key()] {
				unknown = append(unknown, e.Key())
			}
		}
	}
	sort.Strings(unknown)
	errs := slices.Clone(a.errs)
	if len(unknown) > 0 {
		errs = append(errs, fmt.Errorf("unsupported argument(s) %v", unknown))
	}
	return errors.Join(errs...)
}
