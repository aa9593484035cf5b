package lwt

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain fails the run if the tests leave goroutines behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leftGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind by the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leftGoroutines waits up to 5 s for every goroutine but this one (and the
// os/signal loop that go test -fuzz starts) to end, and returns the stacks
// of those still there.
func leftGoroutines() string {
	var left []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		left = nil
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")[1:] {
			if !strings.Contains(g, "os/signal.loop") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return ""
		}
	}
	return strings.Join(left, "\n\n")
}

// FuzzRunPending drives the executor's queue with posts and runs in any
// order. Every job runs exactly once, in posting order, at most budget per
// run, and while jobs are left the notifier stays readable (no lost wake).
func FuzzRunPending(f *testing.F) {
	f.Add([]byte{0, 255, 3, 3, 255, 255})
	f.Add([]byte{199, 199, 199, 255})
	f.Add(append(make([]byte, 300), 255, 255, 255))
	f.Fuzz(func(t *testing.T, ops []byte) {
		l, err := newLoop()
		if err != nil {
			t.Fatal(err)
		}
		defer l.notify.close()
		posted, ran := 0, 0
		check := func() {
			if left := posted - ran; left > 0 && !readable(t, l.notify) {
				t.Fatalf("%d jobs left and the notifier is not readable", left)
			}
		}
		for _, op := range ops {
			if op >= 200 {
				before := ran
				enter(l, l.runPending)
				if ran-before > budget {
					t.Fatalf("one run ran %d jobs, over the budget", ran-before)
				}
			} else {
				for range int(op)%4 + 1 {
					seq := posted
					posted++
					if err := l.post(func() {
						if seq != ran {
							t.Fatalf("job %d ran as number %d", seq, ran)
						}
						ran++
					}); err != nil {
						t.Fatal(err)
					}
				}
			}
			check()
		}
		for ran < posted {
			enter(l, l.runPending)
			check()
		}
	})
}

func readable(t *testing.T, n *notifier) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(n.readFD()), Events: unix.POLLIN}}
	k, err := unix.Poll(fds, 0)
	if err != nil {
		t.Fatal(err)
	}
	return k == 1
}
