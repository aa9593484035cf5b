//go:build linux

package lwt

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A stall report must be true: an entry that blocks the Lwt thread is
// reported, naming what held it; an entry that is slow only because the
// machine is overloaded (the thread waits for a CPU) is not.
func TestWatchdogReportsOnlyWhatHeldTheThread(t *testing.T) {
	if runQueueWait(threadID()) == 0 {
		t.Fatal("no run-queue statistics for this thread (Linux's /proc/self/task/TID/schedstat)")
	}
	var reports syncBuffer
	stallReports = &reports
	defer func() { stallReports = os.Stderr }()
	s := startSim(t)

	// Overload one CPU: the Lwt thread shares it with 4 spinning processes,
	// and runs 50 ms of CPU work, which takes about 250 ms of wall time.
	var cpu, old unix.CPUSet
	cpu.Set(0)
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		hog := exec.Command("sh", "-c", "while :; do :; done")
		if err := hog.Start(); err != nil {
			t.Fatal(err)
		}
		defer hog.Wait()
		defer hog.Process.Kill()
		if err := unix.SchedSetaffinity(hog.Process.Pid, &cpu); err != nil {
			t.Fatal(err)
		}
	}
	name := &holder{name: "the test's busy entry"}
	var wall time.Duration
	s.onLoop(t, func() {
		if err := unix.SchedSetaffinity(0, &cpu); err != nil {
			t.Error(err)
		}
		defer unix.SchedSetaffinity(0, &old)
		s.l.wd.hold(name)
		start := time.Now()
		for cpu0 := threadCPU(); threadCPU()-cpu0 < stallAfter/2; {
			spin()
		}
		wall = time.Since(start)
	})
	if wall < stallAfter {
		t.Logf("the busy entry took only %v: the CPU was not contended", wall)
	}
	if got := reports.String(); got != "" {
		t.Fatalf("an entry that ran %v of wall time, mostly waiting for the CPU, was reported:\n%s", wall, got)
	}

	name = &holder{name: "the test's blocking entry"}
	s.onLoop(t, func() {
		s.l.wd.hold(name)
		time.Sleep(2 * stallAfter)
	})
	if got := reports.String(); strings.Count(got, "lwt: ") != 1 || !strings.Contains(got, name.name) {
		t.Fatalf("a blocking entry: want one report naming it, got:\n%s", got)
	}

	// A task is named by the line that spawned it.
	_, err := await(t, Spawn(context.Background(), func(context.Context) (struct{}, error) {
		time.Sleep(2 * stallAfter)
		return struct{}{}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := reports.String(); !strings.Contains(got, "the loop task spawned at ") ||
		!strings.Contains(got, "watchdog_test.go:") {
		t.Fatalf("a blocking task: want a report naming where it was spawned, got:\n%s", got)
	}
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// spin burns a millisecond or so of CPU.
func spin() {
	x := 1
	for i := range 1_000_000 {
		x = x*31 + i
	}
	sink.Store(int64(x))
}

var sink atomic.Int64
