package mongosim

import "testing"

// StartTB starts a server for a test or benchmark and closes it in
// tb.Cleanup. It fails the test at once when the server cannot start.
func StartTB(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := NewServer(opts...)
	if err != nil {
		tb.Fatalf("mongosim: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
