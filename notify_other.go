//go:build !linux || lwt_selfpipe

package lwt

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// notifierKind names the notifier this build uses.
const notifierKind = "self-pipe"

// notifier wakes the Lwt thread through a self-pipe (where eventfd does not
// exist, or on Linux with the lwt_selfpipe build tag). The Lwt side watches
// the read end; wake may be called from any goroutine, drain and close only
// from the Lwt thread.
type notifier struct{ r, w int }

func newNotifier() (*notifier, error) {
	var p [2]int
	// ForkLock keeps a concurrent fork+exec from inheriting the fds before
	// they are marked close-on-exec.
	syscall.ForkLock.RLock()
	err := unix.Pipe(p[:])
	if err == nil {
		unix.CloseOnExec(p[0])
		unix.CloseOnExec(p[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, err
	}
	for _, fd := range p {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(p[0])
			unix.Close(p[1])
			return nil, err
		}
	}
	return &notifier{r: p[0], w: p[1]}, nil
}

func (n *notifier) readFD() int { return n.r }

// wake makes readFD readable. EAGAIN means the pipe is full, which is still
// readable, so it is not an error.
func (n *notifier) wake() error {
	_, err := unix.Write(n.w, []byte{1})
	if err == unix.EAGAIN {
		return nil
	}
	return err
}

// drain makes readFD unreadable again (until the next wake).
func (n *notifier) drain() {
	var buf [64]byte
	for {
		if k, err := unix.Read(n.r, buf[:]); k <= 0 || err != nil {
			return
		}
	}
}

func (n *notifier) close() error {
	err := unix.Close(n.w)
	if err2 := unix.Close(n.r); err == nil {
		err = err2
	}
	return err
}
