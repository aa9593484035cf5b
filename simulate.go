package lwt

// A simulated Lwt thread, for tests of Go code without an OCaml program:
// a goroutine locked to its OS thread plays the thread that runs
// Lwt_main.run, waiting on the notifier and running Go's jobs in an
// outermost entry, as lwt_interop.ml does. It runs the bridge's Go side
// only: nothing calls into OCaml (no Func can exist; Lookup finds nothing).

import (
	"context"
	"errors"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Simulate starts a simulated Lwt thread, so that Post, OnLoop, Spawn,
// Then, promises, Shutdown and CurrentStats work without OCaml: for tests
// of Go code that runs beside Lwt, and for this package's examples. The
// Go functions registered for OCaml cannot be called (there is no OCaml).
// stop shuts the bridge down, as Shutdown does, and waits for the thread
// to end; calling it again returns nil. Simulate fails if a bridge runs.
func Simulate() (stop func() error, err error) {
	started := make(chan error)
	ended := make(chan error, 1)
	var l *loop
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var err error
		if l, err = start(); err != nil {
			started <- err
			return
		}
		started <- nil
		fds := []unix.PollFd{{Fd: int32(l.notify.readFD()), Events: unix.POLLIN}}
		for !l.isClosed() {
			if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
				ended <- err
				return
			}
			l.arrive()
			l.runPending()
			l.leave()
		}
		ended <- nil
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	var once sync.Once
	var stopErr error
	return func() error {
		once.Do(func() {
			// l's own, not whichever bridge runs now: l may be shut down already.
			if err := l.shutdownFromGo(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
				stopErr = err
			}
			if err := <-ended; err != nil && stopErr == nil {
				stopErr = err
			}
		})
		return stopErr
	}, nil
}
