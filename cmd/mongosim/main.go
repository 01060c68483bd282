// Command mongosim runs the in-process MongoDB replica-set simulator as a
// program, so that tools other than Go tests (a shell, mongosh, a driver in
// another language, a manual debugging session) can talk to it.
//
// It prints its connection string as the first line of standard output, so a
// script can start it in the background and read one line to learn where it
// listens:
//
//	mongosim -addr 127.0.0.1:0
//	mongodb://127.0.0.1:41234/?replicaSet=rs0
//
// With -members 3 (or 5) it runs a replica set, each member on a free
// loopback port, and the connection string names them all.
//
// With -shards N it runs a sharded cluster: N shards, each a replica set
// of -members members (shard0, shard1, ...), behind -mongos routers
// (default 1); the connection string lists every mongos, without a
// replicaSet, and -noop-interval applies to every shard:
//
//	mongosim -shards 2 -mongos 2
//	mongodb://127.0.0.1:41234,127.0.0.1:41235/
//
// It serves until SIGINT or SIGTERM and then exits 0. Logs go to standard
// error, keeping standard output for the connection string alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/changestream-go/changestream/internal/mongosim"
)

// Exit codes: 2 follows the flag package's convention for usage errors, so
// scripts can tell a bad invocation from a failure to serve.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program minus process plumbing: it serves until ctx is
// done and returns the exit code. Keeping signals and os.Exit out of it lets
// the tests drive it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mongosim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:27017", "TCP `host:port` to listen on; port 0 picks a free one")
	replSet := fs.String("replset", "rs0", "replica set `name` reported by hello")
	oplogMax := fs.Int("oplog-max", 0, "keep only the newest `n` oplog entries (0: unbounded); older resume tokens fail with ChangeStreamHistoryLost")
	noop := fs.Duration("noop-interval", mongosim.DefaultNoopInterval, "write a no-op oplog entry every `period` in which nothing else was written, as a primary's periodic no-op writer does (0: off)")
	members := fs.Int("members", 1, "run a replica set of `n` members (1, 3 or 5), each on its own free loopback port; the connection string names them all")
	shards := fs.Int("shards", 0, "run a sharded cluster of `n` shards, each a replica set of -members members, behind -mongos routers (0: no cluster)")
	routers := fs.Int("mongos", 1, "with -shards, how many mongos `routers` to run; the connection string lists them all")
	version := fs.Bool("version", false, "print the simulated server version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mongosim [flags]\n\n"+
			"Runs a simulated MongoDB %s replica-set primary, prints its connection\n"+
			"string as the first line of standard output and serves until SIGINT or SIGTERM.\n\nFlags:\n",
			mongosim.ServerVersion)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		// The flag package has already printed the error and the usage.
		return exitUsage
	}
	// usageError reports a bad invocation the way the flag package does:
	// the problem, then the usage.
	usageError := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "mongosim: "+format+"\n", a...)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	if *version {
		fmt.Fprintln(stdout, mongosim.ServerVersion)
		return exitOK
	}
	if *oplogMax < 0 {
		return usageError("-oplog-max must be 0 or more, got %d", *oplogMax)
	}
	if *replSet == "" {
		return usageError("-replset must not be empty")
	}
	if *noop < 0 {
		return usageError("-noop-interval must be 0 or more, got %v", *noop)
	}
	if *members != 1 && *members != 3 && *members != 5 {
		return usageError("-members must be 1, 3 or 5, got %d", *members)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *members > 1 && set["addr"] {
		return usageError("-addr does not apply with -members %d: every member takes a free loopback port", *members)
	}
	if *shards < 0 {
		return usageError("-shards must be 0 or more, got %d", *shards)
	}
	if *shards > 0 && (set["addr"] || set["replset"]) {
		return usageError("-addr and -replset do not apply with -shards: every member and mongos takes a free loopback port, and the shards are named shard0, shard1, ...")
	}
	if *routers < 1 {
		return usageError("-mongos must be at least 1, got %d", *routers)
	}
	if set["mongos"] && *shards == 0 {
		return usageError("-mongos needs -shards")
	}

	logger := log.New(stderr, "mongosim: ", log.LstdFlags)
	shared := []mongosim.Option{mongosim.WithOplogMax(*oplogMax), mongosim.WithNoopInterval(*noop)}
	opts := append([]mongosim.Option{mongosim.WithReplSetName(*replSet)}, shared...)
	var s deployment
	var err error
	switch {
	case *shards > 0:
		s, err = mongosim.NewShardedCluster(*shards, *members, *routers, shared)
	case *members == 1:
		s, err = mongosim.NewServer(append(opts, mongosim.WithAddr(*addr))...)
	default:
		s, err = mongosim.NewReplicaSet(*members, opts)
	}
	if err != nil {
		logger.Print(err)
		return exitError
	}
	// The connection string goes out before anything else on stdout: a
	// script reads exactly one line to learn where to connect.
	if _, err := fmt.Fprintln(stdout, s.URI()); err != nil {
		logger.Printf("writing the connection string: %v", err)
		_ = s.Close()
		return exitError
	}
	hosts := strings.TrimPrefix(s.URI(), "mongodb://")
	hosts = hosts[:strings.IndexByte(hosts, '/')]
	if *shards > 0 {
		logger.Printf("MongoDB %s (wire version %d) simulator, sharded cluster of %d shard(s) of %d member(s), mongos listening on %s",
			mongosim.ServerVersion, mongosim.MaxWireVersion, *shards, *members, hosts)
	} else {
		logger.Printf("MongoDB %s (wire version %d) simulator, replica set %q of %d member(s), listening on %s",
			mongosim.ServerVersion, mongosim.MaxWireVersion, *replSet, *members, hosts)
	}
	if srv, ok := s.(*mongosim.Server); ok && !srv.IsLoopback() {
		logger.Printf("warning: -addr %s is not a loopback address and the simulator has no authentication: "+
			"anyone who can reach it can read and change its data", *addr)
	}

	<-ctx.Done()
	logger.Print("shutting down")
	if err := s.Close(); err != nil {
		logger.Printf("close: %v", err)
		return exitError
	}
	return exitOK
}

// deployment is what the program serves: one server, a replica set or a
// sharded cluster.
type deployment interface {
	URI() string
	Close() error
}
