package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is one child process of the cluster (a Kubernetes component run by this binary, or
// containerd) that a test may stop and start again: its log is appended to, never truncated,
// so one file tells the whole story of a run.
type Process struct {
	name    string
	path    string
	args    []string
	logPath string
	// ready, when set, is polled after a start until it returns nil.
	ready   func(ctx context.Context) error
	timeout time.Duration

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// newComponent runs a Kubernetes component through this very binary (main.go's components).
func newComponent(name string, args []string, logPath string, timeout time.Duration) (*Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return &Process{name: name, path: self, args: append([]string{name}, args...), logPath: logPath, timeout: timeout}, nil
}

// Start starts the process and waits for its ready check.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.name)
	}
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Fprintf(log, "\n----- sidecar-watch-control-plane: starting %s %s -----\n", p.name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout, cmd.Stderr = log, log
	// A component dies with this process, whatever ends it, so no run leaves one behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	if p.ready == nil {
		return nil
	}
	deadline := time.Now().Add(p.timeout)
	last := errors.New("no answer yet")
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			p.cmd = nil
			return fmt.Errorf("%s exited before it was ready; last lines of %s:\n%s", p.name, p.logPath, tail(p.logPath, 15))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if last = p.ready(ctx); last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s (%v); last lines of %s:\n%s", p.name, p.timeout, last, p.logPath, tail(p.logPath, 15))
}

// Stop ends the process: SIGTERM and up to grace for it to exit, then SIGKILL. A grace of
// zero kills at once, as a crash does.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	if grace > 0 {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
	return nil
}

// Running reports whether the child process is alive.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}
