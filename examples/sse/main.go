// Command sse streams a collection's changes to every connected HTTP
// client as server-sent events, through one hub: one change stream and
// one connection to MongoDB, however many clients are connected.
//
//	MONGODB_URI=mongodb://... go run ./examples/sse -addr :8080 -db shop -coll orders
//	curl -N 'localhost:8080/events?op=insert'
//
// Without MONGODB_URI it runs a demonstration on an embedded simulator:
// three clients connect, documents are written, and each client prints
// what it received.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/hub"
	"github.com/changestream-go/changestream/internal/mongosim"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "where to serve")
	dbName := flag.String("db", "shop", "the database")
	collName := flag.String("coll", "orders", "the collection")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		err = serveUntil(ctx, uri, *addr, *dbName, *collName)
	} else {
		err = demo(ctx, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sse:", err)
		os.Exit(1)
	}
}

// handler serves /events from a hub: each request is one subscription,
// optionally only of one operation type (?op=insert), closed when the
// client goes away.
func handler(h *hub.Hub) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		flusher, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		var opts []hub.Option
		if op := r.URL.Query().Get("op"); op != "" {
			opts = append(opts, hub.WithFilter(func(ev bson.Raw) bool {
				got, _ := ev.Lookup("operationType").StringValueOK()
				return got == op
			}))
		}
		// A client that cannot keep up is dropped rather than holding up
		// every other client; it reconnects.
		opts = append(opts, hub.WithPolicy(hub.Drop), hub.WithBuffer(256))
		sub, err := h.Subscribe(opts...)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer sub.Close()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		flusher.Flush()
		for sub.Next(r.Context()) {
			js, err := bson.MarshalExtJSON(sub.Current, false, false)
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "data: %s\n\n", js); err != nil {
				return
			}
			flusher.Flush()
		}
		if err := sub.Err(); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", err)
			flusher.Flush()
		}
	})
	return mux
}

// start opens the hub on coll and serves it on ln until ctx ends.
func start(ctx context.Context, coll *mongo.Collection, ln net.Listener) (stop func(), err error) {
	cs, err := changestream.WatchCollection(ctx, coll, nil)
	if err != nil {
		return nil, err
	}
	h, err := hub.New(cs)
	if err != nil {
		_ = cs.Close(context.Background())
		return nil, err
	}
	srv := &http.Server{Handler: handler(h), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	return func() {
		// Closing the hub ends every subscription, so the handlers return
		// and Shutdown does not wait on open streams.
		_ = h.Close(context.Background())
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}, nil
}

func serveUntil(ctx context.Context, uri, addr, dbName, collName string) error {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	stop, err := start(ctx, client.Database(dbName).Collection(collName), ln)
	if err != nil {
		_ = ln.Close()
		return err
	}
	fmt.Printf("serving http://%s/events\n", ln.Addr())
	<-ctx.Done()
	stop()
	return nil
}

// demo serves an embedded simulator's collection, connects three clients
// (one only for deletes), writes, and prints what each received.
func demo(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sim, err := mongosim.NewServer()
	if err != nil {
		return err
	}
	defer sim.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(sim.URI()))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	coll := client.Database("shop").Collection("orders")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	stop, err := start(ctx, coll, ln)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stop()
	base := "http://" + ln.Addr().String() + "/events"

	type result struct {
		name  string
		lines []string
		err   error
	}
	clients := []struct {
		name, query string
		events      int // what it waits for: two inserts and a delete, or the delete
	}{{"client 1", "", 3}, {"client 2", "", 3}, {"client 3 (deletes)", "?op=delete", 1}}
	results := make(chan result, len(clients))
	ready := make(chan struct{}, len(clients))
	httpClient := &http.Client{Transport: &http.Transport{}}
	defer httpClient.CloseIdleConnections()
	for _, c := range clients {
		go func() {
			lines, err := readEvents(ctx, httpClient, base+c.query, c.events, ready)
			results <- result{c.name, lines, err}
		}()
	}
	for range clients {
		<-ready
	}
	for i := range 2 {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "item", Value: []string{"apple", "pear"}[i]}}); err != nil {
			return err
		}
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 0}}); err != nil {
		return err
	}
	byName := map[string]result{}
	for range clients {
		r := <-results
		if r.err != nil {
			return fmt.Errorf("%s: %w", r.name, r.err)
		}
		byName[r.name] = r
	}
	for _, c := range clients {
		fmt.Fprintf(out, "%s received %d events: %s\n", c.name, len(byName[c.name].lines), strings.Join(byName[c.name].lines, ", "))
	}
	fmt.Fprintf(out, "one change stream served %d clients\n", len(clients))
	return nil
}

// readEvents connects to url and returns the operation and _id of the
// first n events it receives; it says on ready when it is connected.
func readEvents(ctx context.Context, client *http.Client, url string, n int, ready chan<- struct{}) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ready <- struct{}{}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for len(out) < n && sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev bson.Raw
		if err := bson.UnmarshalExtJSON([]byte(data), false, &ev); err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s %d", ev.Lookup("operationType").StringValue(), ev.Lookup("documentKey", "_id").AsInt64()))
	}
	return out, sc.Err()
}
