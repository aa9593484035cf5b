//go:build linux

package lwt

// Scheduler statistics of the Lwt thread, for the watchdog (any goroutine).

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func threadID() int { return unix.Gettid() }

// runQueueWait returns how long thread tid has waited for a CPU since it
// started (the second field of /proc/self/task/TID/schedstat), or 0 where
// the kernel does not keep it.
func runQueueWait(tid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	ns, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return time.Duration(ns)
}
