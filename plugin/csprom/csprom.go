// Package csprom exports the figures of change streams and of
// checkpoint.Run consumers as Prometheus metrics. It is a module of its
// own, so that importing changestream pulls no Prometheus code.
//
// Register a Metrics once, then give each stream a name (a label value the
// application chooses: keep the set small and fixed, never a token or a
// document key) and its hook:
//
//	m := csprom.New()
//	prometheus.MustRegister(m)
//	cs, err := changestream.WatchCollection(ctx, coll, nil, changestream.WithHooks(m.Hook("orders")))
//	m.Watch("orders", cs)        // behind, health, events, resumes at each scrape
//	m.WatchRun("orders", stats)  // a checkpoint.Run's health, lease, retries, dead letters
//
// The metrics, all named changestream_* and labelled stream="...":
//
//	changestream_events_total                  counter    events returned (Stats.Events)
//	changestream_fragments_total               counter    fragments of split events received
//	changestream_resumes_total                 counter    resumes that reopened the cursor (Stats.Resumes)
//	changestream_resume_attempts_total         counter    resume attempts, by result (ok, failed)
//	changestream_errors_total                  counter    errors reported, by kind and terminal
//	changestream_batch_bytes_total             counter    bytes of documents received
//	changestream_batch_duration_seconds        histogram  aggregate and getMore latency, by command
//	changestream_behind_seconds                gauge      Behind()
//	changestream_health                        gauge      1 for the stream's health state, by state
//	changestream_run_health                    gauge      1 for a Run's health state, by state
//	changestream_run_lease_epoch               gauge      the epoch of the lease a Run holds, 0 for none
//	changestream_run_handler_retries_total     counter    handler calls tried again
//	changestream_run_dead_lettered_total       counter    events handed to DeadLetter
//
// Error kinds are bounded: history_lost, unresumable, timeout, canceled,
// closed, network, server, other.
package csprom

import (
	"context"
	"errors"
	"maps"
	"sync"

	"github.com/changestream-go/changestream"
	"github.com/changestream-go/changestream/checkpoint"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Metrics is a prometheus.Collector for named streams and consumers. Its
// methods are safe from any goroutine.
type Metrics struct {
	th changestream.HealthThresholds

	attempts *prometheus.CounterVec
	errs     *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	mu      sync.Mutex
	streams map[string]*changestream.ChangeStream
	runs    map[string]*checkpoint.Stats
}

// Option configures New.
type Option func(*Metrics)

// WithHealthThresholds sets the thresholds the health gauges judge by
// (changestream's defaults otherwise).
func WithHealthThresholds(th changestream.HealthThresholds) Option {
	return func(m *Metrics) { m.th = th }
}

// New returns the metrics, to be registered once.
func New(opts ...Option) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "changestream_resume_attempts_total",
			Help: "Resume attempts, by result (ok, failed)."}, []string{"stream", "result"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "changestream_errors_total",
			Help: "Errors the stream reported, by kind, and whether they ended it."}, []string{"stream", "kind", "terminal"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "changestream_batch_bytes_total",
			Help: "Bytes of event documents received from the server."}, []string{"stream"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "changestream_batch_duration_seconds",
			Help:    "How long the server took to answer an aggregate or a getMore (a getMore includes its await).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"stream", "command"}),
		streams: map[string]*changestream.ChangeStream{},
		runs:    map[string]*checkpoint.Stats{},
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Hook returns the hook that feeds the metrics of the stream named name:
// pass it to changestream.WithHooks (or in checkpoint.Config.Options).
func (m *Metrics) Hook(name string) changestream.Hook { return &hook{m: m, name: name} }

// Watch has the metrics read cs's figures at each scrape, under name,
// until Forget(name). A later Watch of the same name replaces it.
func (m *Metrics) Watch(name string, cs *changestream.ChangeStream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.streams[name] = cs
}

// WatchRun has the metrics read a checkpoint.Run's Stats at each scrape,
// under name, until Forget(name).
func (m *Metrics) WatchRun(name string, st *checkpoint.Stats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[name] = st
}

// Forget stops reading the stream and the Run named name, and drops the
// series of its hook.
func (m *Metrics) Forget(name string) {
	m.mu.Lock()
	delete(m.streams, name)
	delete(m.runs, name)
	m.mu.Unlock()
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.attempts, m.errs, m.bytes, m.latency} {
		v.DeletePartialMatch(prometheus.Labels{"stream": name})
	}
}

var (
	descEvents    = prometheus.NewDesc("changestream_events_total", "Events the stream returned.", []string{"stream"}, nil)
	descFragments = prometheus.NewDesc("changestream_fragments_total", "Fragments of split events received.", []string{"stream"}, nil)
	descResumes   = prometheus.NewDesc("changestream_resumes_total", "Resumes that reopened the server cursor.", []string{"stream"}, nil)
	descBehind    = prometheus.NewDesc("changestream_behind_seconds", "How far the stream is behind the server (0 once caught up).", []string{"stream"}, nil)
	descHealth    = prometheus.NewDesc("changestream_health", "1 for the stream's health state.", []string{"stream", "state"}, nil)
	descRunHealth = prometheus.NewDesc("changestream_run_health", "1 for a checkpoint.Run's health state.", []string{"stream", "state"}, nil)
	descEpoch     = prometheus.NewDesc("changestream_run_lease_epoch", "The epoch of the lease the Run holds, 0 for none.", []string{"stream"}, nil)
	descRetries   = prometheus.NewDesc("changestream_run_handler_retries_total", "Handler calls tried again after a failure.", []string{"stream"}, nil)
	descDead      = prometheus.NewDesc("changestream_run_dead_lettered_total", "Events handed to the dead-letter function.", []string{"stream"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEvents, descFragments, descResumes, descBehind, descHealth, descRunHealth, descEpoch, descRetries, descDead} {
		ch <- d
	}
	m.attempts.Describe(ch)
	m.errs.Describe(ch)
	m.bytes.Describe(ch)
	m.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	streams, runs := maps.Clone(m.streams), maps.Clone(m.runs)
	m.mu.Unlock()
	for name, cs := range streams {
		s := cs.Stats()
		ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(s.Events), name)
		ch <- prometheus.MustNewConstMetric(descFragments, prometheus.CounterValue, float64(s.Fragments), name)
		ch <- prometheus.MustNewConstMetric(descResumes, prometheus.CounterValue, float64(s.Resumes), name)
		h := cs.Health(m.th)
		ch <- prometheus.MustNewConstMetric(descBehind, prometheus.GaugeValue, h.Behind.Seconds(), name)
		ch <- prometheus.MustNewConstMetric(descHealth, prometheus.GaugeValue, 1, name, string(h.State))
	}
	for name, st := range runs {
		h := st.Health(m.th)
		ch <- prometheus.MustNewConstMetric(descRunHealth, prometheus.GaugeValue, 1, name, string(h.State))
		ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(h.LeaseEpoch), name)
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(h.HandlerRetries), name)
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.CounterValue, float64(h.DeadLettered), name)
	}
	m.attempts.Collect(ch)
	m.errs.Collect(ch)
	m.bytes.Collect(ch)
	m.latency.Collect(ch)
}

// hook is one stream's HookResume, HookError and HookBatch.
type hook struct {
	m    *Metrics
	name string
}

func (h *hook) OnResume(ev changestream.ResumeEvent) {
	result := "ok"
	if ev.Err != nil {
		result = "failed"
	}
	h.m.attempts.WithLabelValues(h.name, result).Inc()
}

func (h *hook) OnError(ev changestream.ErrorEvent) {
	terminal := "false"
	if ev.Terminal {
		terminal = "true"
	}
	h.m.errs.WithLabelValues(h.name, ErrorKind(ev.Err), terminal).Inc()
}

func (h *hook) OnBatch(ev changestream.BatchEvent) {
	h.m.bytes.WithLabelValues(h.name).Add(float64(ev.Bytes))
	h.m.latency.WithLabelValues(h.name, ev.Command).Observe(ev.Duration.Seconds())
}

// ErrorKind is the bounded label value the metrics give err: history_lost,
// unresumable, timeout, canceled, closed, network, server or other.
func ErrorKind(err error) string {
	var se mongo.ServerError
	switch {
	case errors.Is(err, changestream.ErrHistoryLost):
		return "history_lost"
	case errors.Is(err, changestream.ErrUnresumablePosition):
		return "unresumable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, changestream.ErrClosed):
		return "closed"
	case mongo.IsNetworkError(err):
		return "network"
	case errors.As(err, &se):
		return "server"
	}
	return "other"
}
