package changestream

import (
	"errors"
	"log/slog"
	"time"
)

// Hook is a value given to [WithHooks]. It implements one or more of the
// one-method interfaces below ([HookResume], [HookError], [HookBatch]),
// and is called for the events of those it implements; an adapter for
// Prometheus, OpenTelemetry or a log implements the ones it needs. Hooks
// run inside Next, TryNext and the Watch functions, in the caller's
// goroutine and before the call returns: they must be quick and must not
// call the stream's Next, TryNext or Close.
type Hook any

// HookResume is called after every attempt to resume the stream.
type HookResume interface {
	OnResume(ResumeEvent)
}

// HookError is called with every error a call reports through
// [ChangeStream.Err] or a Watch function returns.
type HookError interface {
	OnError(ErrorEvent)
}

// HookBatch is called for every reply of the server: the aggregate that
// opens or resumes the stream, and every getMore.
type HookBatch interface {
	OnBatch(BatchEvent)
}

// ResumeEvent describes a resume.
type ResumeEvent struct {
	// Cause is the error that made the stream resume, nil when it resumes
	// a cursor that an earlier call abandoned (its context ended).
	Cause error
	// Option is the start option the resume used: "resumeAfter",
	// "startAfter", "startAtOperationTime", or "" (the original command).
	Option string
	// Position is where the resume asked the server to carry on.
	Position Position
	// Err is nil when the resume succeeded.
	Err error
	// Duration is how long the resume's aggregate took.
	Duration time.Duration
}

// ErrorEvent describes an error the stream reported.
type ErrorEvent struct {
	// Err is the error.
	Err error
	// Terminal reports that the stream is over ([ChangeStream.Alive] is
	// false); otherwise the next call carries on.
	Terminal bool
}

// BatchEvent describes one reply of the server.
type BatchEvent struct {
	// Events is the number of documents in the batch.
	Events int
	// Bytes is the size of those documents.
	Bytes int
	// Duration is how long the command took.
	Duration time.Duration
	// Command is "aggregate" or "getMore".
	Command string
}

// WithHooks adds hooks to the stream. Each hook is called for the events
// of the Hook* interfaces it implements; a hook that implements none is
// refused.
func WithHooks(hooks ...Hook) Option {
	return optionFunc(func(c *config) {
		for _, h := range hooks {
			_, r := h.(HookResume)
			_, e := h.(HookError)
			_, b := h.(HookBatch)
			if !r && !e && !b {
				c.errs = append(c.errs, errors.New("WithHooks: a hook implements none of HookResume, HookError, HookBatch"))
				continue
			}
			c.hooks = append(c.hooks, h)
		}
	})
}

// WithLogger logs what an operator needs to know and nothing per event: a
// resume (Info), a failed resume (Warn) and an error that ends the stream
// (Error), each with the error, the start option and the cluster time of
// the position. A nil logger is refused.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l == nil {
			c.errs = append(c.errs, errors.New("WithLogger: nil logger"))
			return
		}
		c.hooks = append(c.hooks, logHook{l})
	})
}

// logHook is WithLogger's hook.
type logHook struct{ l *slog.Logger }

// OnResume logs a resume at Info, a failed one at Warn.
func (h logHook) OnResume(ev ResumeEvent) {
	attrs := []any{
		slog.String("option", ev.Option),
		slog.Uint64("position_time_t", uint64(ev.Position.ClusterTime.T)),
		slog.Uint64("position_time_i", uint64(ev.Position.ClusterTime.I)),
		slog.Duration("took", ev.Duration),
	}
	if ev.Cause != nil {
		attrs = append(attrs, slog.Any("cause", ev.Cause))
	}
	if ev.Err != nil {
		h.l.Warn("changestream: resume failed", append(attrs, slog.Any("error", ev.Err))...)
		return
	}
	h.l.Info("changestream: resumed", attrs...)
}

// OnError logs an error that ends the stream.
func (h logHook) OnError(ev ErrorEvent) {
	if ev.Terminal && ev.Err != nil {
		attrs := []any{slog.Any("error", ev.Err)}
		var hl *HistoryLostError
		if errors.As(ev.Err, &hl) {
			t := hl.Position().ClusterTime
			attrs = append(attrs, slog.String("option", hl.Option), slog.Uint64("position_time_t", uint64(t.T)), slog.Uint64("position_time_i", uint64(t.I)))
		}
		h.l.Error("changestream: stream ended", attrs...)
	}
}

func (cs *ChangeStream) hookResume(ev ResumeEvent) {
	for _, h := range cs.cfg.hooks {
		if r, ok := h.(HookResume); ok {
			r.OnResume(ev)
		}
	}
}

func (cs *ChangeStream) hookError(err error) {
	if err == nil || cs.cfg == nil || len(cs.cfg.hooks) == 0 {
		return
	}
	ev := ErrorEvent{Err: err, Terminal: !cs.alive.Load()}
	for _, h := range cs.cfg.hooks {
		if r, ok := h.(HookError); ok {
			r.OnError(ev)
		}
	}
}

func (cs *ChangeStream) hookBatch(c *cursor, command string, took time.Duration) {
	if len(cs.cfg.hooks) == 0 {
		return
	}
	ev := BatchEvent{Events: c.remaining(), Bytes: len(c.rest), Duration: took, Command: command}
	for _, h := range cs.cfg.hooks {
		if r, ok := h.(HookBatch); ok {
			r.OnBatch(ev)
		}
	}
}
