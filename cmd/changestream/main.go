// Command changestream follows MongoDB change streams from a terminal,
// built on package changestream and package checkpoint alone.
//
//	changestream tail -uri mongodb://localhost:27017 -db shop -coll orders
//	changestream tail -db shop -checkpoint file:./state -format canonical | jq .
//	changestream token 8263F1A5B2000000012B042C0100296E5A1004...
//
// tail prints one event per line, as relaxed or canonical Extended JSON
// when its output is piped and in a compact human format on a terminal,
// and survives failovers and dropped connections as the package does.
// With -checkpoint it saves its position as its output is flushed: a
// restart carries on after the last line written, repeating at most the
// lines written after the last save and losing none, even after SIGKILL.
//
// token decodes a resume token: its cluster time, version, type and the
// rest of what the server wrote into it.
//
// Exit codes:
//
//	0  stopped by SIGINT or SIGTERM (output flushed, position saved)
//	1  any other failure (server unreachable, output error, ...)
//	2  bad usage or input, an option the server refused, or a checkpoint
//	   of another stream
//	3  the position cannot be resumed: its history left the oplog, or the
//	   server cannot find its token
//	4  the stream was invalidated (its collection or database dropped or
//	   renamed)
//	5  the lease was lost to another process (-lease)
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitUnresumable = 3
	exitInvalidated = 4
	exitLeaseLost   = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: changestream <command> [flags]

Commands:
  tail    print a change stream's events, one per line
  token   decode a resume token

Run "changestream <command> -h" for a command's flags.
`

// run is the program minus process plumbing, for the tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "tail":
		return tail(ctx, args[1:], stdout, stderr)
	case "token":
		return token(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "changestream: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}
