package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/changestream-go/changestream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func token(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print a JSON object instead of aligned lines")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: changestream token [flags] TOKEN

Decodes a resume token: an event's _id or a postBatchResumeToken, given as
its hex _data (82...) or as the {"_data": "..."} JSON drivers print. It
prints the cluster time (as a timestamp and as UTC), the format version,
whether it is an event or a high-water mark, the index within a
transaction, whether it is an invalidate's, the collection UUID, the event
identifier and, for a fragment of a split event, its number.

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
	if fs.NArg() != 1 {
		return fail(stderr, usagef("token takes one token (hex _data or {\"_data\": ...} JSON), got %d arguments", fs.NArg()), fromNow, "")
	}
	tok, err := parseToken(fs.Arg(0))
	if err != nil {
		return fail(stderr, usagef("%v", err), fromNow, "")
	}
	info, err := changestream.DecodeToken(tok)
	if err != nil {
		return fail(stderr, usagef("%v", err), fromNow, "")
	}
	if *asJSON {
		return fail(stderr, printTokenJSON(stdout, info), fromNow, "")
	}
	printToken(stdout, info)
	return exitOK
}

// tokenFields are a decoded token's fields as printed: names as the
// server's ResumeTokenData calls them.
func tokenFields(info changestream.TokenInfo) [][2]string {
	kind := "event (128)"
	if info.HighWater {
		kind = "high-water mark (0)"
	}
	uuid := "-"
	if info.CollectionUUID != nil {
		uuid = formatUUID(info.CollectionUUID)
	}
	id := "-"
	if info.EventIdentifier != nil {
		if b, err := bson.MarshalExtJSON(info.EventIdentifier, false, false); err == nil {
			id = string(b)
		}
	}
	frag := "-"
	if info.FragmentNum != nil {
		frag = fmt.Sprint(*info.FragmentNum)
	}
	return [][2]string{
		{"clusterTime", fmt.Sprintf("Timestamp(%d, %d)  %s", info.ClusterTime.T, info.ClusterTime.I,
			time.Unix(int64(info.ClusterTime.T), 0).UTC().Format(time.RFC3339))},
		{"version", fmt.Sprint(info.Version)},
		{"tokenType", kind},
		{"txnOpIndex", fmt.Sprint(info.TxnOpIndex)},
		{"fromInvalidate", fmt.Sprint(info.FromInvalidate)},
		{"uuid", uuid},
		{"eventIdentifier", id},
		{"fragmentNum", frag},
	}
}

func printToken(w io.Writer, info changestream.TokenInfo) {
	for _, f := range tokenFields(info) {
		fmt.Fprintf(w, "%-16s %s\n", f[0], f[1])
	}
}

func printTokenJSON(w io.Writer, info changestream.TokenInfo) error {
	out := map[string]any{
		"clusterTime":    map[string]any{"t": info.ClusterTime.T, "i": info.ClusterTime.I},
		"wallClock":      time.Unix(int64(info.ClusterTime.T), 0).UTC().Format(time.RFC3339),
		"version":        info.Version,
		"tokenType":      map[bool]int{true: 0, false: 128}[info.HighWater],
		"txnOpIndex":     info.TxnOpIndex,
		"fromInvalidate": info.FromInvalidate,
	}
	if info.CollectionUUID != nil {
		out["uuid"] = formatUUID(info.CollectionUUID)
	}
	if info.EventIdentifier != nil {
		b, err := bson.MarshalExtJSON(info.EventIdentifier, false, false)
		if err != nil {
			return err
		}
		out["eventIdentifier"] = json.RawMessage(b)
	}
	if info.FragmentNum != nil {
		out["fragmentNum"] = *info.FragmentNum
	}
	enc := json.NewEncoder(w)
	return enc.Encode(out)
}

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) != 32 {
		return h
	}
	return strings.Join([]string{h[:8], h[8:12], h[12:16], h[16:20], h[20:]}, "-")
}
