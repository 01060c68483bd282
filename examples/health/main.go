// Command health serves the health of a checkpoint.Run over HTTP, for a
// Kubernetes liveness and readiness probe or a load balancer:
//
//	GET /livez   200 unless the consumer is stuck or failed, 503 then
//	GET /readyz  200 while it is caught up, consuming, or a standby; 503
//	             while it starts, snapshots, lags, resumes, is stuck or
//	             has failed
//	GET /status  the health as JSON: state, reason, behind, lease epoch,
//	             handler retries, dead-lettered events, error
//
//	MONGODB_URI=mongodb://... go run ./examples/health -addr :8080 -db shop -coll orders
//
// Without MONGODB_URI it runs a demonstration on an embedded simulator: a
// consumer whose handler stalls on one document, the probes asked before,
// during and after the stall.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"github.com/changestream-go/changestream/internal/mongosim"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "where to serve")
	dbName := flag.String("db", "shop", "the database")
	collName := flag.String("coll", "orders", "the collection")
	dir := flag.String("checkpoints", "./checkpoints", "the checkpoint directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		err = serveUntil(ctx, uri, *addr, *dbName, *collName, *dir)
	} else {
		err = demo(ctx, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "health:", err)
		os.Exit(1)
	}
}

// status is /status's body.
type status struct {
	State          changestream.HealthState `json:"state"`
	Reason         string                   `json:"reason"`
	BehindSeconds  float64                  `json:"behindSeconds"`
	LeaseEpoch     int64                    `json:"leaseEpoch,omitempty"`
	HandlerRetries int64                    `json:"handlerRetries"`
	DeadLettered   int64                    `json:"deadLettered"`
	Error          string                   `json:"error,omitempty"`
}

// ready are the states /readyz answers 200 for.
var ready = map[changestream.HealthState]bool{
	changestream.HealthCaughtUp: true, changestream.HealthConsuming: true, checkpoint.HealthStandby: true,
}

// handler serves the probes from st, judged by th.
func handler(st *checkpoint.Stats, th changestream.HealthThresholds) http.Handler {
	mux := http.NewServeMux()
	probe := func(ok func(checkpoint.Health) bool) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			h := st.Health(th)
			body := status{State: h.State, Reason: h.Reason, BehindSeconds: h.Stream.Behind.Seconds(),
				LeaseEpoch: h.LeaseEpoch, HandlerRetries: h.HandlerRetries, DeadLettered: h.DeadLettered}
			if h.Err != nil {
				body.Error = h.Err.Error()
			}
			w.Header().Set("Content-Type", "application/json")
			if !ok(h) {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			_ = json.NewEncoder(w).Encode(body)
		}
	}
	mux.HandleFunc("GET /livez", probe(func(h checkpoint.Health) bool { return h.State.Healthy() }))
	mux.HandleFunc("GET /readyz", probe(func(h checkpoint.Health) bool { return ready[h.State] }))
	mux.HandleFunc("GET /status", probe(func(checkpoint.Health) bool { return true }))
	return mux
}

// serve serves the probes on ln until stop is called.
func serve(st *checkpoint.Stats, th changestream.HealthThresholds, ln net.Listener) (stop func()) {
	srv := &http.Server{Handler: handler(st, th), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}
}

func serveUntil(ctx context.Context, uri, addr, dbName, collName, dir string) error {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	store, err := checkpoint.NewFileStore(dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	st := &checkpoint.Stats{}
	stop := serve(st, changestream.HealthThresholds{}, ln)
	defer stop()
	fmt.Printf("serving http://%s/livez, /readyz and /status\n", ln.Addr())
	cfg := checkpoint.Config{Key: "health-" + dbName + "." + collName, Collection: client.Database(dbName).Collection(collName),
		Store: store, Stats: st}
	return checkpoint.RunRaw(ctx, cfg, func(_ context.Context, ev bson.Raw) error {
		fmt.Println(ev)
		return nil
	})
}

// demo runs a consumer on an embedded simulator whose handler stalls on
// the document {stall: true} until released, and asks the probes before,
// during and after.
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
	dir, err := os.MkdirTemp("", "health-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := checkpoint.NewFileStore(dir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	st := &checkpoint.Stats{}
	// A stall of half a second is "stuck" here; the default is 2 minutes.
	th := changestream.HealthThresholds{Stuck: 500 * time.Millisecond}
	stop := serve(st, th, ln)
	defer stop()
	base := "http://" + ln.Addr().String()
	httpClient := &http.Client{Transport: &http.Transport{}}
	defer httpClient.CloseIdleConnections()

	coll := client.Database("shop").Collection("orders")
	opened := make(chan changestream.Position, 1)
	release := make(chan struct{})
	cfg := checkpoint.Config{Key: "orders", Collection: coll, Store: store, Stats: st,
		OnOpen: func(p changestream.Position) { opened <- p }}
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	ended := false // Run's error has been taken from done
	defer func() {
		stopRun()
		if !ended {
			<-done
		}
	}()
	go func() {
		done <- checkpoint.RunRaw(runCtx, cfg, func(ctx context.Context, ev bson.Raw) error {
			if stall, _ := ev.Lookup("fullDocument", "stall").BooleanOK(); stall {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}()
	select {
	case <-opened:
	case err := <-done:
		ended = true
		return err
	}
	report := func(when string, want changestream.HealthState) error {
		for deadline := time.Now().Add(10 * time.Second); st.Health(th).State != want && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		live, _, err := get(ctx, httpClient, base+"/livez")
		if err != nil {
			return err
		}
		readyCode, body, err := get(ctx, httpClient, base+"/readyz")
		if err != nil {
			return err
		}
		var s status
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: state %s, /livez %d, /readyz %d\n", when, s.State, live, readyCode)
		return nil
	}
	if err := report("before any write", changestream.HealthCaughtUp); err != nil {
		return err
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "stall", Value: true}}); err != nil {
		return err
	}
	if err := report("the handler stalls", changestream.HealthStuck); err != nil {
		return err
	}
	close(release)
	if err := report("released", changestream.HealthCaughtUp); err != nil {
		return err
	}
	stopRun()
	ended = true
	if err := <-done; err != nil {
		return err
	}
	return report("Run returned", checkpoint.HealthStopped)
}

// get fetches url and returns its status code and body.
func get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
