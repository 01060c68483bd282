// Package unified runs the Change Streams specification's tests, written in
// the Unified Test Format, with this module's ChangeStream as the
// implementation under test.
//
// The tests' expected events and commands were recorded against real
// MongoDB servers, so they check both the package and the simulator it is
// tested on (internal/mongosim). The files are read at test time from the
// directory named by CHANGESTREAM_SPEC_TESTS and are never copied into the
// repository: their license (CC BY-NC-SA) forbids it.
//
// The runner implements the part of the format those files use (schema
// versions up to 1.7): runOnRequirements, initialData, client, database,
// collection and session entities with command monitoring, the change
// stream operations and the CRUD, collection, index and command operations
// around them, fail points, expectError, expectEvents and outcome. Anything
// else fails the test that uses it, rather than passing it unchecked.
package unified

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changestream-go/changestream/internal/mongosim"
	"github.com/changestream-go/changestream/internal/testclient"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// supportedSchema is the newest schema version the runner implements.
var supportedSchema = []int{1, 7}

// defaultSpecDir is where the spec files live, relative to the module root.
const defaultSpecDir = "../shared/spec-tests/change-streams"

// specFile is one test file.
type specFile struct {
	Raw               bson.Raw         `bson:"-"`
	Description       string           `bson:"description"`
	SchemaVersion     string           `bson:"schemaVersion"`
	RunOnRequirements []runOn          `bson:"runOnRequirements"`
	CreateEntities    []bson.Raw       `bson:"createEntities"`
	InitialData       []collectionData `bson:"initialData"`
	Tests             []specTest       `bson:"tests"`
}

type specTest struct {
	Raw               bson.Raw         `bson:"-"`
	Description       string           `bson:"description"`
	RunOnRequirements []runOn          `bson:"runOnRequirements"`
	SkipReason        string           `bson:"skipReason"`
	Operations        []operation      `bson:"operations"`
	ExpectEvents      []bson.Raw       `bson:"expectEvents"`
	Outcome           []collectionData `bson:"outcome"`
}

// collectionData is an entry of initialData or outcome.
type collectionData struct {
	CollectionName string     `bson:"collectionName"`
	DatabaseName   string     `bson:"databaseName"`
	CreateOptions  bson.Raw   `bson:"createOptions"`
	Documents      []bson.Raw `bson:"documents"`
}

// config says where the files are, what to run them against and with
// which change stream.
type config struct {
	dir         string
	uri         string // MONGODB_URI; "" starts a simulator per test
	driverWatch bool   // control mode: the driver's Watch instead of ours
	// members is the size of the simulated replica set
	// (CHANGESTREAM_SPEC_MEMBERS: 1, 3 or 5; default 1).
	members int
	// shards > 0 runs the tests on a simulated sharded cluster of this
	// many shards (CHANGESTREAM_SPEC_TOPOLOGY=sharded: 2).
	shards int
}

// specDir resolves CHANGESTREAM_SPEC_TESTS (default defaultSpecDir): a
// relative path is taken from the module root, found by walking up from the
// working directory to go.mod, so the same setting works from the
// repository root and from the package directory.
func specDir() (string, error) {
	dir := os.Getenv("CHANGESTREAM_SPEC_TESTS")
	if dir == "" {
		dir = defaultSpecDir
	}
	if filepath.IsAbs(dir) {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, dir), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}

// tally counts results per file for the summary.
type tally struct {
	mu    sync.Mutex
	files map[string]*fileTally
	order []string
}

type fileTally struct {
	passed, failed, skipped int
	skips                   []string // "test: reason"
	failures                []string
}

func newTally() *tally { return &tally{files: make(map[string]*fileTally)} }

func (tl *tally) file(name string) *fileTally {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	ft := tl.files[name]
	if ft == nil {
		ft = &fileTally{}
		tl.files[name] = ft
		tl.order = append(tl.order, name)
	}
	return ft
}

func (tl *tally) record(file, test string, t *testing.T, skipReason string) {
	ft := tl.file(file)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	switch {
	case t.Failed():
		ft.failed++
		ft.failures = append(ft.failures, test)
	case t.Skipped():
		ft.skipped++
		ft.skips = append(ft.skips, test+": "+skipReason)
	default:
		ft.passed++
	}
}

// totals returns the counts over every file.
func (tl *tally) totals() (passed, failed, skipped int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, ft := range tl.files {
		passed += ft.passed
		failed += ft.failed
		skipped += ft.skipped
	}
	return
}

// summary renders the per-file table and the total line, each prefixed with
// "spec:" so that no line reads like go test's own summary.
func (tl *tally) summary() string {
	tl.mu.Lock()
	var b strings.Builder
	for _, name := range tl.order {
		ft := tl.files[name]
		fmt.Fprintf(&b, "spec: %s: %d passed, %d failed, %d skipped\n", name, ft.passed, ft.failed, ft.skipped)
		for _, s := range ft.skips {
			fmt.Fprintf(&b, "spec:   skipped %s\n", s)
		}
		for _, f := range ft.failures {
			fmt.Fprintf(&b, "spec:   FAILED %s\n", f)
		}
	}
	tl.mu.Unlock()
	p, f, s := tl.totals()
	fmt.Fprintf(&b, "spec: %d passed, %d failed, %d skipped", p, f, s)
	return b.String()
}

// runSpecDir runs every *.json file of cfg.dir, one subtest per file and
// one per test inside it.
func runSpecDir(t *testing.T, cfg config, tl *tally) {
	paths, err := filepath.Glob(filepath.Join(cfg.dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		t.Skipf("no *.json spec files in %s", cfg.dir)
	}
	deps, err := deployments(cfg)
	if err != nil {
		t.Fatalf("reading the deployment's version and topology: %v", err)
	}
	var names []string
	for _, d := range deps {
		names = append(names, d.info.String())
	}
	t.Logf("spec: running %d files from %s against %s (%s); change stream: %s",
		len(paths), cfg.dir, deploymentName(cfg), strings.Join(names, " or "), streamName(cfg))
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		t.Run(name, func(t *testing.T) { runFile(t, cfg, p, name, deps, tl) })
	}
}

// deployment is a kind of deployment tests can run against: the one named
// by MONGODB_URI, or a simulator started with opts for each test.
type deployment struct {
	info    serverInfo
	sim     []mongosim.Option
	members int // > 1: a simulated replica set of this many members
	// shards > 0: a simulated sharded cluster of this many shards of
	// members members each, behind two mongos
	shards int
}

// specRouters is how many mongos a simulated cluster of the spec runner
// has: two, so that a test's client may use either, as on a real one.
const specRouters = 2

// start starts the deployment's simulator for one test and returns its
// connection string.
func (d *deployment) start(t *testing.T) string {
	if d.shards > 0 {
		return mongosim.StartShardedClusterTB(t, d.shards, d.members, specRouters, d.sim).URI()
	}
	if d.members > 1 {
		return mongosim.StartReplicaSetTB(t, d.members, d.sim).URI()
	}
	return mongosim.StartTB(t, d.sim...).URI()
}

// deployments lists what the tests can run against. The simulator can be a
// replica set (its default) or a standalone, so that a test that requires
// the single topology runs instead of being skipped; each test takes the
// first one its requirements accept.
func deployments(cfg config) ([]deployment, error) {
	if cfg.uri != "" {
		si, err := probeServer(cfg.uri)
		return []deployment{{info: si}}, err
	}
	if cfg.shards > 0 {
		// The runner's choice: shards write their no-op every second
		// rather than every 10 s, so that an idle shard holds a test's
		// events back a second at most.
		d := deployment{shards: cfg.shards, members: cfg.members, sim: []mongosim.Option{mongosim.WithNoopInterval(time.Second)}}
		si, err := probeSimulator(d)
		d.info = si
		return []deployment{d}, err
	}
	var out []deployment
	for _, opts := range [][]mongosim.Option{nil, {mongosim.WithStandalone()}} {
		d := deployment{sim: opts}
		if opts == nil {
			d.members = cfg.members
		}
		si, err := probeSimulator(d)
		if err != nil {
			return nil, err
		}
		d.info = si
		out = append(out, d)
	}
	return out, nil
}

// probeSimulator reads the version and topology of a simulator started as
// d says, for the purpose.
func probeSimulator(d deployment) (serverInfo, error) {
	if d.shards > 0 {
		sc, err := mongosim.NewShardedCluster(d.shards, d.members, specRouters, d.sim)
		if err != nil {
			return serverInfo{}, err
		}
		defer func() { _ = sc.Close() }()
		return probeServer(sc.URI())
	}
	if d.members > 1 {
		rs, err := mongosim.NewReplicaSet(d.members, d.sim)
		if err != nil {
			return serverInfo{}, err
		}
		defer func() { _ = rs.Close() }()
		return probeServer(rs.URI())
	}
	s, err := mongosim.NewServer(d.sim...)
	if err != nil {
		return serverInfo{}, err
	}
	defer func() { _ = s.Close() }()
	return probeServer(s.URI())
}

// choose returns the first deployment that meets both lists of
// requirements, or why none does.
func choose(deps []deployment, fileReqs, testReqs []runOn) (*deployment, string) {
	var why []string
	for i := range deps {
		d := &deps[i]
		reason := unmetAll(fileReqs, d.info)
		if reason != "" {
			reason += " (file)"
		} else if reason = unmetAll(testReqs, d.info); reason != "" {
			reason += " (test)"
		}
		if reason == "" {
			return d, ""
		}
		why = append(why, fmt.Sprintf("%s: %s", d.info, reason))
	}
	return nil, strings.Join(why, "; ")
}

func deploymentName(cfg config) string {
	if cfg.uri != "" {
		return "MONGODB_URI"
	}
	if cfg.members > 1 {
		return fmt.Sprintf("a fresh mongosim replica set of %d members per test", cfg.members)
	}
	return "a fresh mongosim per test"
}

func streamName(cfg config) string {
	if cfg.driverWatch {
		return "the driver's Watch (control mode)"
	}
	return "changestream.Watch*"
}

// loadFile parses a spec file, keeping every value's BSON type.
func loadFile(path string) (*specFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON(data, false, &raw); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	var f specFile
	if err := bson.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	f.Raw = raw
	if tests, err := raw.LookupErr("tests"); err == nil {
		vals, _ := tests.Array().Values()
		for i := range f.Tests {
			f.Tests[i].Raw = vals[i].Document()
		}
	}
	return &f, nil
}

// Keys the runner implements, by level. Decoding into structs would drop
// any other key silently, and a test whose expectation the runner did not
// read would pass unchecked; unknownKeys finds them so the test fails.
var (
	fileKeys = []string{"description", "schemaVersion", "runOnRequirements", "createEntities",
		"initialData", "tests", "_yamlAnchors"}
	testKeys      = []string{"description", "runOnRequirements", "skipReason", "operations", "expectEvents", "outcome"}
	operationKeys = []string{"name", "object", "arguments", "expectError", "expectResult",
		"saveResultAsEntity", "ignoreResultAndError"}
)

// unknownKeys returns the keys of doc that are not in known.
func unknownKeys(doc bson.Raw, known []string) []string {
	elems, _ := doc.Elements()
	var out []string
	for _, e := range elems {
		if !slices.Contains(known, e.Key()) {
			out = append(out, e.Key())
		}
	}
	return out
}

// unsupportedIn lists the keys of a test, and of the file and operations
// it runs, that the runner does not implement.
func unsupportedIn(fileRaw, testRaw bson.Raw) []string {
	var out []string
	for _, k := range unknownKeys(fileRaw, fileKeys) {
		out = append(out, "file."+k)
	}
	for _, k := range unknownKeys(testRaw, testKeys) {
		out = append(out, "test."+k)
	}
	if ops, err := testRaw.LookupErr("operations"); err == nil {
		vals, _ := ops.Array().Values()
		for i, v := range vals {
			for _, k := range unknownKeys(v.Document(), operationKeys) {
				out = append(out, fmt.Sprintf("operations.%d.%s", i, k))
			}
		}
	}
	return out
}

func runFile(t *testing.T, cfg config, path, name string, deps []deployment, tl *tally) {
	f, err := loadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tl.file(name)
	fileSkip := ""
	if v := parseVersion(f.SchemaVersion); len(v) == 0 || v[0] != supportedSchema[0] || compareVersions(v, supportedSchema) > 0 {
		fileSkip = fmt.Sprintf("schemaVersion %q: this runner implements 1.0 to 1.%d", f.SchemaVersion, supportedSchema[1])
	}
	for _, test := range f.Tests {
		t.Run(test.Description, func(t *testing.T) {
			reason := fileSkip
			if reason == "" && test.SkipReason != "" {
				reason = "skipReason: " + test.SkipReason
			}
			var dep *deployment
			if reason == "" {
				dep, reason = choose(deps, f.RunOnRequirements, test.RunOnRequirements)
			}
			defer tl.record(name, test.Description, t, reason)
			if reason != "" {
				t.Skipf("skipped: %s", reason)
			}
			runTest(t, cfg, dep, f, test)
		})
	}
}

// testRun is the state of one running test.
type testRun struct {
	entities    *entityMap
	matcher     *matcher
	internal    *mongo.Client // the runner's own client: initial data, outcome, assertions
	driverWatch bool
	failPoints  []enabledFailPoint
}

type enabledFailPoint struct {
	client *mongo.Client
	name   string
}

func runTest(t *testing.T, cfg config, dep *deployment, f *specFile, test specTest) {
	defer func() {
		// A file of another shape than expected must fail its test, not
		// crash the run and every other file's tests with it.
		if r := recover(); r != nil {
			t.Fatalf("the runner cannot read this test: %v", r)
		}
	}()
	if keys := unsupportedIn(f.Raw, test.Raw); len(keys) > 0 {
		t.Fatalf("the runner does not implement %v", keys)
	}
	uri := cfg.uri
	if uri == "" {
		uri = dep.start(t)
	}
	t.Logf("running against %s", dep.info)
	internal, err := mongo.Connect(testclient.Options(uri))
	if err != nil {
		t.Fatal(err)
	}
	r := &testRun{entities: newEntityMap(uri), internal: internal, driverWatch: cfg.driverWatch}
	r.matcher = &matcher{entities: r.entities}
	defer r.cleanup()

	if err := r.insertInitialData(f.InitialData); err != nil {
		t.Fatalf("initialData: %v", err)
	}
	for _, e := range f.CreateEntities {
		if err := r.entities.createEntity(e); err != nil {
			t.Fatalf("createEntities: %v", err)
		}
	}
	for i, op := range test.Operations {
		if err := r.runOperation(op); err != nil {
			t.Fatalf("operation %d: %v", i, err)
		}
	}
	r.entities.stopRecording()
	for _, ee := range test.ExpectEvents {
		if err := checkExpectedEvents(r.matcher, r.entities, ee); err != nil {
			t.Fatalf("expectEvents: %v", err)
		}
	}
	if err := r.checkOutcome(test.Outcome); err != nil {
		t.Fatalf("outcome: %v", err)
	}
}

// cleanup turns fail points off (the deployment may outlive the test), then
// closes the entities and the runner's client.
func (r *testRun) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.entities.stopRecording()
	for _, fp := range r.failPoints {
		_ = fp.client.Database("admin").RunCommand(ctx, bson.D{
			{Key: "configureFailPoint", Value: fp.name}, {Key: "mode", Value: "off"}}).Err()
	}
	r.entities.close()
	_ = r.internal.Disconnect(ctx)
}

// majority is the write concern of the runner's own writes, so that what it
// writes is visible to every test client at once.
var majority = writeconcern.Majority()

// insertInitialData drops each collection, creates it (with createOptions)
// and inserts its documents, as the format describes.
func (r *testRun) insertInitialData(data []collectionData) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, d := range data {
		db := r.internal.Database(d.DatabaseName, options.Database().SetWriteConcern(majority))
		coll := db.Collection(d.CollectionName)
		if err := coll.Drop(ctx); err != nil {
			return fmt.Errorf("dropping %s.%s: %w", d.DatabaseName, d.CollectionName, err)
		}
		cmd := bson.D{{Key: "create", Value: d.CollectionName}}
		if d.CreateOptions != nil {
			elems, _ := d.CreateOptions.Elements()
			for _, e := range elems {
				cmd = append(cmd, bson.E{Key: e.Key(), Value: e.Value()})
			}
		}
		cmd = append(cmd, bson.E{Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}}})
		if err := db.RunCommand(ctx, cmd).Err(); err != nil {
			return fmt.Errorf("creating %s.%s: %w", d.DatabaseName, d.CollectionName, err)
		}
		if len(d.Documents) > 0 {
			if _, err := coll.InsertMany(ctx, d.Documents); err != nil {
				return fmt.Errorf("inserting into %s.%s: %w", d.DatabaseName, d.CollectionName, err)
			}
		}
	}
	return nil
}

// checkOutcome compares each named collection's documents, in _id order,
// with the expected ones exactly.
func (r *testRun) checkOutcome(outcome []collectionData) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, d := range outcome {
		coll := r.internal.Database(d.DatabaseName).Collection(d.CollectionName)
		cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			return err
		}
		got, err := allDocs(ctx, cur)
		if err != nil {
			return err
		}
		gv, err := toValue(got)
		if err != nil {
			return err
		}
		wv, err := toValue(toA(d.Documents))
		if err != nil {
			return err
		}
		if err := r.matcher.matchValue(wv, gv); err != nil {
			return fmt.Errorf("%s.%s: %w", d.DatabaseName, d.CollectionName, errors.New(err.Error()))
		}
	}
	return nil
}
