package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// tailFlags are tail's flags.
type tailFlags struct {
	uri, db, coll       string
	pipeline            string
	fullDocument        string
	fullDocumentBefore  string
	showExpanded, split bool
	batchSize           int
	maxAwait            time.Duration
	startAfter, startAt string
	checkpointTo, key   string
	lease               time.Duration
	format, fields      string
	progress            bool
	connectTimeout      time.Duration
	commitEvery         time.Duration
	snapshot            string
}

func (f *tailFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.uri, "uri", os.Getenv("MONGODB_URI"), "the deployment's connection `string` (default $MONGODB_URI)")
	fs.StringVar(&f.db, "db", "", "the `database` to watch (none: the whole deployment)")
	fs.StringVar(&f.coll, "coll", "", "the `collection` to watch, in -db (none: the whole database)")
	fs.StringVar(&f.pipeline, "pipeline", "", "stages after $changeStream, as an Extended JSON `array`, or @file to read them from a file")
	fs.StringVar(&f.fullDocument, "full-document", "", "fullDocument `mode`: default, updateLookup, whenAvailable or required")
	fs.StringVar(&f.fullDocumentBefore, "full-document-before-change", "", "fullDocumentBeforeChange `mode`: off, whenAvailable or required")
	fs.BoolVar(&f.showExpanded, "show-expanded-events", false, "also report DDL events (create, createIndexes, modify, ...)")
	fs.BoolVar(&f.split, "split-large-events", false, "let the server split events over 16 MiB, and put them back together")
	fs.IntVar(&f.batchSize, "batch-size", 0, "events per server reply (0: the server's default)")
	fs.DurationVar(&f.maxAwait, "max-await", 0, "how long the server waits for events before an empty reply (0: its default, 1s)")
	fs.StringVar(&f.startAfter, "start-after", "", "start after this resume `token` (hex _data, or {\"_data\": ...} JSON), unless a checkpoint exists")
	fs.StringVar(&f.startAt, "start-at", "", "start at this operation `time` (seconds[.increment], or RFC 3339), unless a checkpoint exists")
	fs.StringVar(&f.checkpointTo, "checkpoint", "", "save the position as output is flushed, and start from it: file:`DIR` or mongodb:DB.COLL")
	fs.StringVar(&f.key, "key", "", "the checkpoint's `name` (default: tail:<target>)")
	fs.DurationVar(&f.lease, "lease", 0, "hold a lease of this `ttl` on the key while tailing, standing by until it is free (needs -checkpoint mongodb:...)")
	fs.StringVar(&f.format, "format", "", "output `format`: relaxed or canonical Extended JSON, or human (default: human on a terminal, relaxed otherwise)")
	fs.StringVar(&f.fields, "fields", "", "print only these comma-separated dotted `paths` of each event")
	fs.BoolVar(&f.progress, "progress", false, "report progress on stderr even when it is not a terminal")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 10*time.Second, "how long to wait for the server at start")
	fs.DurationVar(&f.commitEvery, "commit-every", 200*time.Millisecond, "how often output is flushed and the position saved")
	fs.StringVar(&f.snapshot, "snapshot", "never", "print the target's documents first (operationType \"snapshot\", between \"snapshotStart\" and \"snapshotEnd\"), then its changes: `when` is never, initial (without a checkpoint), when-needed (also when the checkpoint's history is lost) or always")
}

// usageErr is an error in how the tool was called: exit code 2.
type usageErr struct{ msg string }

// Error returns the message.
func (e usageErr) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageErr{fmt.Sprintf(format, args...)} }

func tail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f tailFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: changestream tail [flags]

Prints the events of a change stream on a collection (-db and -coll), a
database (-db) or the whole deployment, one per line, until interrupted.
With -checkpoint it saves its position as it flushes its output and, when
started again, carries on from there.

Exit codes: 0 interrupted, 1 failure, 2 bad usage or a refused option,
3 position lost (history gone or token unknown), 4 invalidated, 5 lease lost.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		return fail(stderr, usagef("unexpected argument %q (flags go before it? see -h)", fs.Arg(0)), fromNow, "")
	}
	from := fromNow
	err := f.run(ctx, stdout, stderr, &from)
	return fail(stderr, err, from, f.key)
}

// fail prints err as one line and returns its exit code.
func fail(stderr io.Writer, err error, from origin, key string) int {
	code := exitCode(err)
	if code != exitOK {
		fmt.Fprintln(stderr, "changestream:", explain(err, from, key))
	}
	return code
}

// run tails; *from says where it started, for the message of an error.
func (f *tailFlags) run(ctx context.Context, stdout, stderr io.Writer, from *origin) error {
	cfg, closeOut, out, err := f.config(ctx, stdout, stderr)
	if err != nil {
		return err
	}
	defer closeOut()
	f.key = cfg.Key
	err = checkpoint.RunRaw(ctx, cfg, out.write)
	if errors.Is(err, changestream.ErrUnresumablePosition) {
		*from = origins(ctx, cfg)
	}
	if ferr := out.flush(context.Background()); err == nil && ferr != nil {
		err = ferr
	}
	return err
}

// origins says where a tail whose position the server could not resume
// from had started. Run saves a checkpoint only once a stream is open, so
// one saved now is the position that failed; without one, the start
// flags gave it.
func origins(ctx context.Context, cfg checkpoint.Config) origin {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	switch _, saved, err := cfg.Store.Load(lctx, cfg.Key); {
	case err == nil && saved:
		return fromCheckpoint
	case cfg.StartAfter != nil:
		return fromStartAfter
	case cfg.StartAtOperationTime != nil:
		return fromStartAt
	}
	return fromNow
}

// config checks the flags, connects and builds Run's configuration.
func (f *tailFlags) config(ctx context.Context, stdout, stderr io.Writer) (checkpoint.Config, func(), *output, error) {
	var cfg checkpoint.Config
	nothing := func() {}
	if f.uri == "" {
		return cfg, nothing, nil, usagef("no deployment: pass -uri or set MONGODB_URI")
	}
	if f.coll != "" && f.db == "" {
		return cfg, nothing, nil, usagef("-coll %q needs -db", f.coll)
	}
	format := f.format
	if format == "" {
		format = "relaxed"
		if isTerminal(stdout) {
			format = "human"
		}
	}
	if format != "relaxed" && format != "canonical" && format != "human" {
		return cfg, nothing, nil, usagef("-format %q: use relaxed, canonical or human", f.format)
	}
	pipeline, err := parsePipeline(f.pipeline)
	if err != nil {
		return cfg, nothing, nil, err
	}
	switch f.fullDocument {
	case "", "default", "updateLookup", "whenAvailable", "required":
	default:
		return cfg, nothing, nil, usagef("-full-document %q: use default, updateLookup, whenAvailable or required", f.fullDocument)
	}
	switch f.fullDocumentBefore {
	case "", "off", "whenAvailable", "required":
	default:
		return cfg, nothing, nil, usagef("-full-document-before-change %q: use off, whenAvailable or required", f.fullDocumentBefore)
	}
	for _, c := range []struct {
		bad  bool
		flag string
		v    any
	}{{f.batchSize < 0, "-batch-size", f.batchSize}, {f.maxAwait < 0, "-max-await", f.maxAwait}, {f.lease < 0, "-lease", f.lease}} {
		if c.bad {
			return cfg, nothing, nil, usagef("%s %v: cannot be negative", c.flag, c.v)
		}
	}
	if f.commitEvery <= 0 {
		return cfg, nothing, nil, usagef("-commit-every %v: must be positive", f.commitEvery)
	}
	if f.startAfter != "" && f.startAt != "" {
		return cfg, nothing, nil, usagef("-start-after and -start-at cannot both be given")
	}
	if f.startAfter != "" {
		if cfg.StartAfter, err = parseToken(f.startAfter); err != nil {
			return cfg, nothing, nil, usagef("-start-after: %v", err)
		}
	}
	if f.startAt != "" {
		ts, err := parseTimestamp(f.startAt)
		if err != nil {
			return cfg, nothing, nil, usagef("-start-at: %v", err)
		}
		cfg.StartAtOperationTime = &ts
	}
	switch f.snapshot {
	case "never", "":
	case "initial":
		cfg.Snapshot = checkpoint.SnapshotInitial
	case "when-needed":
		cfg.Snapshot = checkpoint.SnapshotWhenNeeded
	case "always":
		cfg.Snapshot = checkpoint.SnapshotAlways
	default:
		return cfg, nothing, nil, usagef("-snapshot %q: use never, initial, when-needed or always", f.snapshot)
	}
	// -checkpoint is checked now; its store is made once connected.
	var storeDir, storeDB, storeColl string
	switch kind, arg, _ := strings.Cut(f.checkpointTo, ":"); {
	case f.checkpointTo == "":
		cfg.Store = &memoryStore{}
	case kind == "file":
		if arg == "" {
			return cfg, nothing, nil, usagef("-checkpoint %q: use file:DIR", f.checkpointTo)
		}
		storeDir = arg
	case kind == "mongodb":
		var ok bool
		if storeDB, storeColl, ok = strings.Cut(arg, "."); !ok || storeDB == "" || storeColl == "" {
			return cfg, nothing, nil, usagef("-checkpoint %q: use mongodb:DB.COLL", f.checkpointTo)
		}
	default:
		return cfg, nothing, nil, usagef("-checkpoint %q: use file:DIR or mongodb:DB.COLL", f.checkpointTo)
	}
	if f.lease > 0 && storeDB == "" {
		return cfg, nothing, nil, usagef("-lease needs -checkpoint mongodb:DB.COLL, where the lease is kept")
	}

	client, err := mongo.Connect(options.Client().ApplyURI(f.uri).SetServerSelectionTimeout(f.connectTimeout).SetAppName("changestream-tail"))
	if err != nil {
		return cfg, nothing, nil, usagef("bad -uri: %v", err)
	}
	disconnect := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
	}
	pctx, cancel := context.WithTimeout(ctx, f.connectTimeout)
	defer cancel()
	if err := client.Ping(pctx, nil); err != nil {
		disconnect()
		if ctx.Err() != nil {
			return cfg, nothing, nil, ctx.Err()
		}
		return cfg, nothing, nil, fmt.Errorf("cannot reach the deployment in %v: %w (is the server up, and the URI right?)", f.connectTimeout, err)
	}

	target := "cluster"
	switch {
	case f.coll != "":
		cfg.Collection = client.Database(f.db).Collection(f.coll)
		target = f.db + "." + f.coll
	case f.db != "":
		cfg.Database = client.Database(f.db)
		target = f.db
	default:
		cfg.Client = client
	}
	cfg.Key = f.key
	if cfg.Key == "" {
		cfg.Key = "tail:" + target
	}
	cfg.Pipeline = pipeline
	cfg.FullDocument = changestream.FullDocument(f.fullDocument)
	cfg.FullDocumentBeforeChange = changestream.FullDocumentBeforeChange(f.fullDocumentBefore)
	cfg.ShowExpandedEvents, cfg.SplitLargeEvents = f.showExpanded, f.split
	if f.batchSize > 0 {
		cfg.Options = append(cfg.Options, changestream.WithBatchSize(int32(f.batchSize)))
	}
	if f.maxAwait > 0 {
		cfg.Options = append(cfg.Options, changestream.WithMaxAwaitTime(f.maxAwait))
	}
	cfg.CommitInterval = f.commitEvery
	cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, 5*time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	switch {
	case storeDir != "":
		store, err := checkpoint.NewFileStore(storeDir)
		if err != nil {
			disconnect()
			return cfg, nothing, nil, usagef("-checkpoint: %v", err)
		}
		cfg.Store = store
	case storeDB != "":
		store, err := checkpoint.NewMongoStore(client.Database(storeDB).Collection(storeColl))
		if err != nil {
			disconnect()
			return cfg, nothing, nil, err
		}
		cfg.Store = store
		if f.lease > 0 {
			cfg.Lease = &checkpoint.LeaseConfig{Store: store, TTL: f.lease, StopWhenLost: true}
		}
	}

	out := &output{w: bufio.NewWriterSize(stdout, 64<<10), format: format, interactive: isTerminal(stdout)}
	if f.fields != "" {
		for _, p := range strings.Split(f.fields, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out.fields = append(out.fields, p)
			}
		}
	}
	cfg.BeforeCommit = out.flush
	stopProgress := func() {}
	if f.progress || isTerminal(stderr) {
		p := newProgress(stderr, isTerminal(stderr))
		out.onEvent = p.event
		cfg.Options = append(cfg.Options, changestream.WithHooks(p))
		cfg.OnSnapshot = p.snapshot
		stopProgress = p.start()
	}
	return cfg, func() { stopProgress(); disconnect() }, out, nil
}

// memoryStore keeps the position in memory: without -checkpoint, a tail
// that reconnects after an invalidate still starts after it.
type memoryStore struct {
	mu sync.Mutex
	cp *checkpoint.Checkpoint
}

// Load returns the position saved in memory.
func (m *memoryStore) Load(context.Context, string) (checkpoint.Checkpoint, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cp == nil {
		return checkpoint.Checkpoint{}, false, nil
	}
	return *m.cp, true, nil
}

// Save keeps cp if it is past the saved position.
func (m *memoryStore) Save(_ context.Context, _ string, cp checkpoint.Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cp == nil || checkpoint.Compare(m.cp.Position, cp.Position) < 0 {
		m.cp = &cp
	}
	return nil
}

// parsePipeline reads -pipeline: an Extended JSON array, or @file.
func parsePipeline(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	if name, ok := strings.CutPrefix(s, "@"); ok {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, usagef("-pipeline: %v", err)
		}
		s = string(data)
	}
	// Extended JSON has no top-level array: wrap it in a document.
	var wrapper struct {
		P bson.A `bson:"p"`
	}
	if err := bson.UnmarshalExtJSON([]byte(`{"p":`+s+`}`), false, &wrapper); err != nil {
		return nil, usagef("-pipeline is not an Extended JSON array of stages: %v", err)
	}
	return wrapper.P, nil
}

// parseToken reads a resume token: hex _data, or {"_data": "..."} JSON.
func parseToken(s string) (bson.Raw, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		var token bson.Raw
		if err := bson.UnmarshalExtJSON([]byte(s), false, &token); err != nil {
			return nil, fmt.Errorf("not a token document: %v", err)
		}
		if _, ok := token.Lookup("_data").StringValueOK(); !ok {
			return nil, errors.New(`the token has no "_data" string`)
		}
		return token, nil
	}
	if len(s) < 18 || len(s)%2 != 0 || strings.Trim(strings.ToUpper(s), "0123456789ABCDEF") != "" {
		return nil, fmt.Errorf("%q is not a token's hex _data", s)
	}
	return bson.Marshal(bson.D{{Key: "_data", Value: strings.ToUpper(s)}})
}

// parseTimestamp reads an operation time: seconds[.increment], or an
// RFC 3339 time (increment 0).
func parseTimestamp(s string) (bson.Timestamp, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return bson.Timestamp{T: uint32(t.Unix())}, nil
	}
	secs, inc, _ := strings.Cut(s, ".")
	t, err := strconv.ParseUint(secs, 10, 32)
	if err != nil {
		return bson.Timestamp{}, fmt.Errorf("%q is neither seconds[.increment] nor an RFC 3339 time", s)
	}
	var i uint64
	if inc != "" {
		if i, err = strconv.ParseUint(inc, 10, 32); err != nil {
			return bson.Timestamp{}, fmt.Errorf("%q: bad increment", s)
		}
	}
	return bson.Timestamp{T: uint32(t), I: uint32(i)}, nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
