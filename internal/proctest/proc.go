package proctest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a program run again and again as a test hurts it: started,
// killed with SIGKILL, paused with SIGSTOP, restarted. Its stderr from
// every incarnation is kept, for the test to count what it reported.
type Proc struct {
	Bin  string
	Args []string

	mu   sync.Mutex
	logs bytes.Buffer
	cmd  *exec.Cmd
	exit chan struct{}
}

// Start starts a new incarnation; the previous one must have exited.
func (p *Proc) Start(t testing.TB) {
	t.Helper()
	if err := p.Launch(); err != nil {
		t.Fatal(err)
	}
}

// Launch is Start for a goroutine other than the test's, which must not
// call t.Fatal: it returns the error instead.
func (p *Proc) Launch() error {
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.logs.Write(b)
	})
	if err := cmd.Start(); err != nil {
		return err
	}
	exit := make(chan struct{})
	// The goroutine's owner is the process: it ends when the process does.
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	p.mu.Lock()
	p.cmd, p.exit = cmd, exit
	p.mu.Unlock()
	return nil
}

func (p *Proc) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.exit
}

// Exited reports whether the current incarnation has ended.
func (p *Proc) Exited() bool {
	_, exit := p.current()
	select {
	case <-exit:
		return true
	default:
		return false
	}
}

// Signal sends sig to the current incarnation.
func (p *Proc) Signal(sig os.Signal) error {
	cmd, _ := p.current()
	return cmd.Process.Signal(sig)
}

// Kill kills the current incarnation with SIGKILL (a paused one too) and
// waits for it to end.
func (p *Proc) Kill() {
	cmd, exit := p.current()
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-exit
}

// Stop interrupts the current incarnation and waits for it to end,
// killing it if it has not within 20 seconds.
func (p *Proc) Stop() {
	cmd, exit := p.current()
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-exit:
	case <-time.After(20 * time.Second):
		p.Kill()
	}
}

// Count returns how many times s occurs in every incarnation's stderr.
func (p *Proc) Count(s string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Count(p.logs.String(), s)
}

// Logs returns every incarnation's stderr so far.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
