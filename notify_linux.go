//go:build linux && !lwt_selfpipe

package lwt

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// notifierKind names the notifier this build uses.
const notifierKind = "eventfd"

// notifier wakes the Lwt thread through an eventfd. The Lwt side watches fd
// for readability; wake may be called from any goroutine, drain and close
// only from the Lwt thread.
type notifier struct{ fd int }

func newNotifier() (*notifier, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &notifier{fd: fd}, nil
}

func (n *notifier) readFD() int { return n.fd }

var one = binary.NativeEndian.AppendUint64(nil, 1)

// wake makes readFD readable. EAGAIN means the counter is saturated, which
// is still readable, so it is not an error.
func (n *notifier) wake() error {
	_, err := unix.Write(n.fd, one)
	if err == unix.EAGAIN {
		return nil
	}
	return err
}

// drain makes readFD unreadable again (until the next wake).
func (n *notifier) drain() {
	var buf [8]byte
	_, _ = unix.Read(n.fd, buf[:])
}

func (n *notifier) close() error { return unix.Close(n.fd) }
