package lwt

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"reflect"
	"runtime"
	"slices"
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

// FuzzWire round-trips compound values through the flat buffer stubs.c
// reads and writes: what Go writes, Go reads back unchanged, and an int
// out of OCaml's range is an error.
func FuzzWire(f *testing.F) {
	f.Add("", []byte(nil), int64(0), 0.0, false, uint8(0))
	f.Add("nul\x00and\xff", []byte{0, 1, 2}, int64(math.MaxInt64>>1), math.Inf(-1), true, uint8(7))
	f.Add("x", []byte{}, int64(math.MinInt64), math.NaN(), true, uint8(255))
	type value = []Pair[*int64, Pair[[]string, Pair[float64, *[]byte]]]
	w, err := wireOf(reflect.TypeFor[value]())
	if err != nil {
		f.Fatal(err)
	}
	if w.code != "lpoiplspfoy" || w.sig != "(int option * (string list * (float * bytes option))) list" {
		f.Fatalf("code %q, sig %q", w.code, w.sig)
	}
	f.Fuzz(func(t *testing.T, s string, b []byte, n int64, x float64, some bool, count uint8) {
		var in value
		for i := range int(count) % 5 {
			e := Pair[*int64, Pair[[]string, Pair[float64, *[]byte]]]{}
			if some || i%2 == 1 {
				k := n
				e.First = &k
				bb := append([]byte{}, b...)
				e.Second.Second.Second = &bb
			}
			e.Second.First = strings.Split(s, "\x00")
			e.Second.Second.First = x
			in = append(in, e)
		}
		buf, err := w.put(nil, reflect.ValueOf(in))
		if n < minOCamlInt || n > maxOCamlInt {
			if (some || count%5 > 1) && count%5 > 0 && err == nil {
				t.Fatalf("%d out of OCaml's range was written", n)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var out value
		if rest := w.get(buf, reflect.ValueOf(&out).Elem()); len(rest) != 0 {
			t.Fatalf("%d bytes left over", len(rest))
		}
		if len(out) != len(in) {
			t.Fatalf("wrote %d elements, read %d", len(in), len(out))
		}
		for i := range in {
			a, b := in[i], out[i]
			if (a.First == nil) != (b.First == nil) || a.First != nil && *a.First != *b.First ||
				!slices.Equal(a.Second.First, b.Second.First) ||
				math.Float64bits(a.Second.Second.First) != math.Float64bits(b.Second.Second.First) ||
				(a.Second.Second.Second == nil) != (b.Second.Second.Second == nil) ||
				a.Second.Second.Second != nil && !bytes.Equal(*a.Second.Second.Second, *b.Second.Second.Second) {
				t.Fatalf("element %d: wrote %v, read %v", i, a, b)
			}
		}
	})
}
