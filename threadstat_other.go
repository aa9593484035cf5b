//go:build !linux

package lwt

// Where the kernel keeps no run-queue statistics, the watchdog times the
// Lwt thread's entries in wall time.

import "time"

func threadID() int { return 0 }

func runQueueWait(int) time.Duration { return 0 }
